-- A poll in progress is marked apart from the last result, so a poll that could not
-- record its end (disk full, a crash) leaves the previous result and reason visible.
ALTER TABLE fetch_status ADD COLUMN running_since INTEGER;
