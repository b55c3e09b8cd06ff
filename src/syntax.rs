//! The character classes of HTTP's authentication syntax (RFC 9110 §5.6.2, §11.2), shared by
//! every parser and builder in the crate — and usable to check configuration values (a realm,
//! a proxy name) before they go on the wire.
//!
//! ```
//! use tower_bearer::syntax::{is_token, is_token68};
//!
//! assert!(is_token("my-proxy"));
//! assert!(!is_token("my proxy"));
//! assert!(is_token68(b"mF_9.B5f-4.1JqM=="));
//! assert!(!is_token68(b"=="));
//! ```

/// `tchar` (RFC 9110 §5.6.2): the characters of a token, such as an auth-scheme or a parameter
/// name.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token = 1*tchar` (RFC 9110 §5.6.2).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// The characters of `token68` before its `=` padding (RFC 9110 §11.2) — the same set as RFC
/// 6750's `b64token`: `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`.
pub fn is_token68_char(b: u8) -> bool {
    // Branch-free, so that a scan over a whole token vectorizes: `| 0x20` folds ASCII upper
    // case onto lower case and maps nothing else into `a..=z`.
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 9110 §11.2),
/// which is also RFC 6750's `b64token`, the syntax of a bearer token.
pub fn is_token68(s: &[u8]) -> bool {
    let body_end = s
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |last| last + 1);
    // Runs on every request over the whole token: one branch-free test per byte.
    let well_formed = s[..body_end]
        .iter()
        .fold(true, |ok, &b| ok & is_token68_char(b));
    body_end > 0 && well_formed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_bytes_are_exactly_the_rfc_set() {
        for b in 0..=u8::MAX {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_char(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn token68_padding_only_at_the_end() {
        assert!(is_token68(b"abc"));
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b""));
        assert!(!is_token68(b"="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b"a b"));
    }

    #[test]
    fn tchar_is_the_rfc_set() {
        let extra = b"!#$%&'*+-.^_`|~";
        for b in 0..=u8::MAX {
            assert_eq!(
                is_tchar(b),
                b.is_ascii_alphanumeric() || extra.contains(&b),
                "byte {b:#04x}"
            );
        }
        assert!(is_token("Bearer"));
        assert!(!is_token(""));
        assert!(!is_token("a,b"));
    }
}
