//! What the fetchmailrc parser produces before any mapping to zolder: fetchmail's own
//! records (one per poll entry and user), each option kept with the line of its keyword
//! so that warnings can point at it. Pure data.

/// A value and the line of the keyword that set it.
pub type At<T> = Option<(T, usize)>;

/// `proto` values (all-lower or all-upper in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoKind {
    Auto,
    Pop2,
    Pop3,
    Imap,
    Apop,
    Rpop,
    Kpop,
    Sdps,
    Etrn,
    Odmr,
}

/// `auth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Any,
    Password,
    Gssapi,
    Kerberos4,
    Kerberos5,
    Ssh,
    External,
    Otp,
    CramMd5,
    Msn,
    Ntlm,
    // Distribution builds and fetchmail's `next` branch:
    OAuthBearer,
    XOAuth2,
    Apop,
}

/// `envelope [N] Header` or `no envelope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    Header { skip: i64, name: String },
    Disabled,
}

/// One local name from `is`/`to`/`user … here`: `name` or `remote=local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub remote: String,
    pub local: Option<String>,
}

/// Options of a `poll`/`skip`/`defaults` entry that come before the users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOpts {
    pub via: At<String>,
    pub aka: At<Vec<String>>,
    pub localdomains: At<Vec<String>>,
    pub protocol: At<ProtoKind>,
    pub service: At<String>,
    pub interval: At<i64>,
    pub auth: At<AuthKind>,
    pub timeout: At<i64>,
    pub envelope: At<Envelope>,
    pub qvirtual: At<String>,
    pub principal: At<String>,
    pub esmtpname: At<String>,
    pub esmtppassword: At<String>,
    pub interface: At<String>,
    pub monitor: At<String>,
    pub plugin: At<String>,
    pub plugout: At<String>,
    pub dns: At<bool>,
    pub checkalias: At<bool>,
    pub uidl: At<bool>,
    pub tracepolls: At<bool>,
    /// `bad-header accept` (true) or `reject` (false).
    pub badheader_accept: At<bool>,
}

/// Options that belong to one user of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserOpts {
    pub remotename: At<String>,
    pub localnames: At<Vec<Mapping>>,
    pub wildcard: At<bool>,
    pub password: At<String>,
    pub passwordfile: At<String>,
    pub passwordfd: At<i64>,
    pub passwordeval: At<String>,
    pub folders: At<Vec<String>>,
    pub smtphunt: At<Vec<String>>,
    pub fetchdomains: At<Vec<String>>,
    pub smtpaddress: At<String>,
    pub smtpname: At<String>,
    pub antispam: At<Vec<i64>>,
    pub mda: At<String>,
    pub bsmtp: At<String>,
    pub lmtp: At<bool>,
    pub preconnect: At<String>,
    pub postconnect: At<String>,
    pub keep: At<bool>,
    pub flush: At<bool>,
    pub limitflush: At<bool>,
    pub fetchall: At<bool>,
    pub rewrite: At<bool>,
    pub forcecr: At<bool>,
    pub stripcr: At<bool>,
    pub pass8bits: At<bool>,
    pub dropstatus: At<bool>,
    pub dropdelivered: At<bool>,
    pub mimedecode: At<bool>,
    pub idle: At<bool>,
    pub forceidle: At<bool>,
    pub ssl: At<bool>,
    pub sslcertck: At<bool>,
    pub sslkey: At<String>,
    pub sslcert: At<String>,
    pub sslproto: At<String>,
    pub sslcertfile: At<String>,
    pub sslcertpath: At<String>,
    pub sslcommonname: At<String>,
    pub sslfingerprint: At<String>,
    pub sslmode: At<String>,
    pub limit: At<i64>,
    pub warnings: At<i64>,
    pub fetchlimit: At<i64>,
    pub fetchsizelimit: At<i64>,
    pub fastuidl: At<i64>,
    pub batchlimit: At<i64>,
    pub expunge: At<i64>,
    pub idletimeout: At<i64>,
    pub properties: At<String>,
    pub retrieve_error: At<String>,
    /// `pwmd_*` / `pinentry_timeout` keywords seen (pwmd password manager).
    pub pwmd: At<String>,
}

/// One record: a poll entry with one of its users (fetchmail's `struct query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The poll name (label); `"defaults"` for the defaults record.
    pub pollname: String,
    /// Line of `poll`/`skip`/`defaults`.
    pub line: usize,
    /// Line of this user's `user` keyword, or of its first option.
    pub user_line: usize,
    pub skip: bool,
    pub is_defaults: bool,
    pub server: ServerOpts,
    pub user: UserOpts,
}

/// `set` statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globals {
    pub daemon: At<i64>,
    pub logfile: At<String>,
    pub idfile: At<String>,
    pub pidfile: At<String>,
    pub postmaster: At<String>,
    pub properties: At<String>,
    pub bouncemail: At<bool>,
    pub spambounce: At<bool>,
    pub softbounce: At<bool>,
    pub syslog: At<bool>,
    pub invisible: At<bool>,
    pub showdots: At<bool>,
}

macro_rules! fill_from {
    ($dst:expr, $src:expr; $($f:ident),* $(,)?) => {
        $( if $dst.$f.is_none() { $dst.$f = $src.$f.clone(); } )*
    };
}

impl ServerOpts {
    /// fetchmail's `optmerge(ctl, defaults, FALSE)`: what this entry left unset (lists:
    /// left empty) is taken from `defaults`.
    pub fn merge_defaults(&mut self, d: &ServerOpts) {
        fill_from!(self, d; via, aka, localdomains, protocol, service, interval, auth,
            timeout, envelope, qvirtual, principal, esmtpname, esmtppassword, interface,
            monitor, plugin, plugout, dns, checkalias, uidl, tracepolls, badheader_accept);
    }
}

impl UserOpts {
    /// As [`ServerOpts::merge_defaults`], for the user part.
    pub fn merge_defaults(&mut self, d: &UserOpts) {
        fill_from!(self, d; remotename, localnames, wildcard, password, passwordfile,
            passwordfd, passwordeval, folders, smtphunt, fetchdomains, smtpaddress,
            smtpname, antispam, mda, bsmtp, lmtp, preconnect, postconnect, keep, flush,
            limitflush, fetchall, rewrite, forcecr, stripcr, pass8bits, dropstatus,
            dropdelivered, mimedecode, idle, forceidle, ssl, sslcertck, sslkey, sslcert,
            sslproto, sslcertfile, sslcertpath, sslcommonname, sslfingerprint, sslmode,
            limit, warnings, fetchlimit, fetchsizelimit, fastuidl, batchlimit, expunge,
            idletimeout, properties, retrieve_error, pwmd);
    }
}
