//! THREAD and UID THREAD (RFC 5256 §4) with the ORDEREDSUBJECT and REFERENCES
//! algorithms, over the messages matching the search keys.
//!
//! # Format
//! `THREAD REFERENCES UTF-8 ALL` → `* THREAD (2)(3 6 (4 23)(44 7 96))`

use crate::imapd::proto::thread::{ordered_subject, references, write_threads};
use crate::imapd::proto::{SearchKey, ThreadAlgorithm};
use crate::imapd::session::{Fatal, Reply, Session};

impl Session {
    pub(crate) async fn op_thread(
        &mut self,
        uid: bool,
        algorithm: ThreadAlgorithm,
        key: SearchKey,
    ) -> Result<Reply, Fatal> {
        let msgs = match self.sort_input(key, true).await {
            Ok(m) => m,
            Err(r) => return Ok(r),
        };
        let threads = match algorithm {
            ThreadAlgorithm::OrderedSubject => ordered_subject(&msgs),
            ThreadAlgorithm::References => references(&msgs),
        };
        let mut line = String::from("THREAD");
        if !threads.is_empty() {
            line.push(' ');
        }
        write_threads(&mut line, &msgs, &threads, uid);
        self.untagged(&line);
        Ok(Reply::ok("Thread completed"))
    }
}
