//! [`Secret`] holds a secret access key in memory only: zeroed when dropped,
//! printed as `***` by `Debug` and `Display`, and without `Serialize`, so it
//! cannot slip into a log line, the state store or an error message. Read it
//! with [`Secret::expose`] at the one place that hands it to a sink or signer.

use crate::model::AccessKeyId;
use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An access key with its secret: what sinks deliver and verifiers sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: AccessKeyId,
    pub secret_access_key: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let c = Credentials {
            access_key_id: AccessKeyId::new("AKIAEXAMPLE"),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        };
        let shown = format!("{c:?} {} {:#?}", c.secret_access_key, c);
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(shown.contains("AKIAEXAMPLE"));
        assert_eq!(c.secret_access_key.expose(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    }
}
