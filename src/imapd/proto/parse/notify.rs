//! NOTIFY arguments (RFC 5465 §8): `NOTIFY NONE` or `NOTIFY SET [STATUS]` and one
//! or more `(filter events)` groups. No I/O.
//!
//! # Format
//! `NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange))
//! (PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))`
//!
//! # Security
//! Untrusted bytes bounded by the framer; at most [`MAX_GROUPS`] groups and
//! [`MAX_NAMES`] mailbox names per filter.

use super::super::types::*;
use super::{Cursor, R};

pub const MAX_GROUPS: usize = 32;
pub const MAX_NAMES: usize = 256;

impl Cursor<'_> {
    pub(super) fn notify(&mut self) -> R<Command> {
        self.sp()?;
        match self.word()?.as_str() {
            "NONE" => return Ok(Command::Notify(None)),
            "SET" => {}
            o => return Err(format!("NOTIFY {o}?")),
        }
        let mut spec = NotifySpec {
            status: false,
            groups: Vec::new(),
        };
        self.sp()?;
        if self.peek_word_is("STATUS") {
            self.i += 6;
            spec.status = true;
            self.sp()?;
        }
        loop {
            if spec.groups.len() >= MAX_GROUPS {
                return Err("too many NOTIFY groups".into());
            }
            self.expect(b'(')?;
            let filter = self.notify_filter()?;
            self.sp()?;
            let events = if self.peek_word_is("NONE") {
                self.i += 4;
                Vec::new()
            } else {
                self.expect(b'(')?;
                let mut ev = Vec::new();
                loop {
                    ev.push(self.notify_event(&filter)?);
                    if self.eat(b')') {
                        break;
                    }
                    self.sp()?;
                }
                ev
            };
            self.expect(b')')?;
            check_events(&filter, &events)?;
            spec.groups.push(NotifyGroup { filter, events });
            if !self.eat(b' ') {
                break;
            }
        }
        Ok(Command::Notify(Some(spec)))
    }

    fn notify_filter(&mut self) -> R<NotifyFilter> {
        Ok(match self.word()?.as_str() {
            "SELECTED" => NotifyFilter::Selected,
            "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
            "INBOXES" => NotifyFilter::Inboxes,
            "PERSONAL" => NotifyFilter::Personal,
            "SUBSCRIBED" => NotifyFilter::Subscribed,
            w @ ("SUBTREE" | "MAILBOXES") => {
                self.sp()?;
                let mut names = Vec::new();
                if self.eat(b'(') {
                    loop {
                        if names.len() >= MAX_NAMES {
                            return Err("too many mailboxes".into());
                        }
                        names.push(self.mailbox()?);
                        if self.eat(b')') {
                            break;
                        }
                        self.sp()?;
                    }
                } else {
                    names.push(self.mailbox()?);
                }
                if w == "SUBTREE" {
                    NotifyFilter::Subtree(names)
                } else {
                    NotifyFilter::Mailboxes(names)
                }
            }
            o => return Err(format!("unknown NOTIFY filter {o}")),
        })
    }

    fn notify_event(&mut self, filter: &NotifyFilter) -> R<NotifyEvent> {
        let name = self.atom()?;
        Ok(match name.to_ascii_uppercase().as_str() {
            "MESSAGENEW" => {
                let mut attrs = Vec::new();
                if self.peek() == Some(b' ') && self.s.get(self.i + 1) == Some(&b'(') {
                    if !matches!(
                        filter,
                        NotifyFilter::Selected | NotifyFilter::SelectedDelayed
                    ) {
                        // RFC 5465 §5.2: FETCH items only for the selected mailbox.
                        return Err("MessageNew FETCH items need SELECTED".into());
                    }
                    self.i += 2;
                    while !self.eat(b')') {
                        if !attrs.is_empty() {
                            self.sp()?;
                        }
                        attrs.push(self.fetch_att()?);
                    }
                }
                NotifyEvent::MessageNew(attrs)
            }
            "MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
            "FLAGCHANGE" => NotifyEvent::FlagChange,
            "MAILBOXNAME" => NotifyEvent::MailboxName,
            "SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
            "ANNOTATIONCHANGE" | "MAILBOXMETADATACHANGE" | "SERVERMETADATACHANGE" => {
                NotifyEvent::Unsupported(name)
            }
            _ => return Err(format!("unknown NOTIFY event {name}")),
        })
    }
}

/// RFC 5465 §5: MessageNew and MessageExpunge go together; FlagChange needs both;
/// mailbox-list events make no sense for the selected mailbox.
fn check_events(filter: &NotifyFilter, events: &[NotifyEvent]) -> R<()> {
    let has = |f: fn(&NotifyEvent) -> bool| events.iter().any(f);
    let new = has(|e| matches!(e, NotifyEvent::MessageNew(_)));
    let gone = has(|e| matches!(e, NotifyEvent::MessageExpunge));
    let flags = has(|e| matches!(e, NotifyEvent::FlagChange));
    if new != gone {
        return Err("MessageNew and MessageExpunge must be given together".into());
    }
    if flags && !new {
        return Err("FlagChange needs MessageNew and MessageExpunge".into());
    }
    let selected = matches!(
        filter,
        NotifyFilter::Selected | NotifyFilter::SelectedDelayed
    );
    if selected
        && has(|e| {
            matches!(
                e,
                NotifyEvent::MailboxName | NotifyEvent::SubscriptionChange
            )
        })
    {
        return Err("mailbox events are not for the selected mailbox".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse_command;
    use super::*;

    #[test]
    fn rfc5465_examples() {
        let c = parse_command(
            b"a NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge)) (subtree Lists MessageNew MessageExpunge)",
        );
        // The second group lacks its parentheses around the events: BAD.
        assert!(c.is_err());
        let c = parse_command(
            b"a NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (subtree (Lists INBOX) (MessageNew MessageExpunge)) (personal (MailboxName SubscriptionChange))",
        )
        .unwrap()
        .command;
        let Command::Notify(Some(spec)) = c else {
            panic!()
        };
        assert!(spec.status);
        assert_eq!(spec.groups.len(), 3);
        assert_eq!(
            spec.groups[0].events[0],
            NotifyEvent::MessageNew(vec![FetchAttr::Uid, FetchAttr::Flags])
        );
        assert_eq!(
            spec.groups[1].filter,
            NotifyFilter::Subtree(vec!["Lists".into(), "INBOX".into()])
        );
        assert_eq!(
            parse_command(b"b NOTIFY NONE").unwrap().command,
            Command::Notify(None)
        );
        assert!(parse_command(b"c NOTIFY SET (personal (MessageNew))").is_err());
        assert!(parse_command(b"c NOTIFY SET (personal (FlagChange))").is_err());
        assert!(
            parse_command(b"c NOTIFY SET (personal (MessageNew (UID) MessageExpunge))").is_err()
        );
        assert!(parse_command(b"c NOTIFY SET (selected (MailboxName))").is_err());
        assert!(parse_command(b"c NOTIFY SET (inboxes NONE)").is_ok());
    }
}
