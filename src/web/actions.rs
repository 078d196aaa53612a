//! `POST /action`: what the buttons of the folder and message pages do, for one or
//! more messages of one mailbox — move, Junk / Not junk, delete (to Trash; in Trash,
//! for good), flag, unflag, mark read or unread.
//!
//! Moves go through the same store seam as IMAP MOVE (copy, then expunge), so a move
//! into the `\Junk` folder queues spam training and one out of it ham training,
//! exactly as an IMAP client's move does.
//!
//! # Format
//! `application/x-www-form-urlencoded`: `csrf`, `mailbox`, `uid` (repeated), `op`
//! (`move` `junk` `notjunk` `delete` `flag` `unflag` `read` `unread`), `to` (for
//! `move`). Answered 303 to the folder.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::session::User;
use super::{AppState, WebError, seg};
use crate::imapd::backend::{Backend, StoreError};
use crate::imapd::proto::StoreMode;

/// UIDs one request may name.
const MAX_UIDS: usize = 5000;

/// The parsed form.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ActionForm {
    pub csrf: String,
    pub mailbox: String,
    pub uids: Vec<u32>,
    pub op: String,
    pub to: String,
}

impl ActionForm {
    pub fn parse(body: &[u8]) -> Result<ActionForm, WebError> {
        let mut f = ActionForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "csrf" => f.csrf = v.into_owned(),
                "mailbox" => f.mailbox = v.into_owned(),
                "op" => f.op = v.into_owned(),
                "to" => f.to = v.into_owned(),
                "uid" => {
                    if f.uids.len() >= MAX_UIDS {
                        return Err(WebError::BadRequest("too many messages at once".into()));
                    }
                    f.uids.push(
                        v.parse()
                            .map_err(|_| WebError::BadRequest("bad uid".into()))?,
                    );
                }
                _ => {}
            }
        }
        Ok(f)
    }
}

/// The user's mailbox with special use `role` (`\Junk`, `\Trash`), else `fallback`.
pub fn special(b: &dyn Backend, user: &str, role: &str, fallback: &str) -> String {
    b.list(user)
        .ok()
        .and_then(|l| {
            l.into_iter()
                .find(|m| m.special_use.as_deref() == Some(role))
                .map(|m| m.name)
        })
        .unwrap_or_else(|| fallback.to_string())
}

/// Moves `uids` from `from` to `to` (copy, then expunge the copied ones).
pub fn move_to(
    b: &dyn Backend,
    user: &str,
    from: &str,
    uids: &[u32],
    to: &str,
) -> Result<(), StoreError> {
    if from == to || uids.is_empty() {
        return Ok(());
    }
    let (_, pairs) = b.copy(user, from, uids, to)?;
    let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    b.expunge(user, from, &moved)?;
    Ok(())
}

/// Carries out one action.
pub fn apply(b: &dyn Backend, user: &str, f: &ActionForm) -> Result<(), WebError> {
    let flag = |mode: StoreMode, flag: &str| -> Result<(), WebError> {
        b.store_flags(user, &f.mailbox, &f.uids, mode, &[flag.to_string()], None)?;
        Ok(())
    };
    match f.op.as_str() {
        "move" => {
            if f.to.is_empty() {
                return Err(WebError::BadRequest("no folder to move to".into()));
            }
            move_to(b, user, &f.mailbox, &f.uids, &f.to)?;
        }
        "junk" => {
            let junk = special(b, user, "\\Junk", "Junk");
            move_to(b, user, &f.mailbox, &f.uids, &junk)?;
        }
        "notjunk" => move_to(b, user, &f.mailbox, &f.uids, "INBOX")?,
        "delete" => {
            let trash = special(b, user, "\\Trash", "Trash");
            if f.mailbox == trash {
                b.expunge(user, &f.mailbox, &f.uids)?;
            } else {
                move_to(b, user, &f.mailbox, &f.uids, &trash)?;
            }
        }
        "flag" => flag(StoreMode::Add, "\\Flagged")?,
        "unflag" => flag(StoreMode::Remove, "\\Flagged")?,
        "read" => flag(StoreMode::Add, "\\Seen")?,
        "unread" => flag(StoreMode::Remove, "\\Seen")?,
        other => return Err(WebError::BadRequest(format!("unknown action `{other}`"))),
    }
    Ok(())
}

/// `POST /action`
pub async fn action(
    State(app): State<AppState>,
    user: User,
    body: Bytes,
) -> Result<Response, WebError> {
    let f = ActionForm::parse(&body)?;
    user.check_csrf(&f.csrf)?;
    let back = format!("/mail/{}", seg(&f.mailbox));
    if !f.uids.is_empty() {
        let u = user.name.clone();
        app.store(move |b| {
            apply(b, &u, &f).map_err(|e| match e {
                WebError::BadRequest(t) => StoreError::Refused(t),
                WebError::NotFound => StoreError::NoMailbox,
                other => StoreError::Internal(format!("{other:?}")),
            })
        })
        .await?;
    }
    Ok((StatusCode::SEE_OTHER, [("location", back)]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_with_repeated_uids() {
        let f =
            ActionForm::parse(b"csrf=ab&mailbox=Family.Kids&uid=3&uid=7&op=move&to=Junk").unwrap();
        assert_eq!(
            f,
            ActionForm {
                csrf: "ab".into(),
                mailbox: "Family.Kids".into(),
                uids: vec![3, 7],
                op: "move".into(),
                to: "Junk".into()
            }
        );
        assert!(ActionForm::parse(b"uid=x").is_err());
        let many = "uid=1&".repeat(MAX_UIDS + 1);
        assert!(ActionForm::parse(many.as_bytes()).is_err());
    }
}
