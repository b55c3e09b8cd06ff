//! The registered claims every token is checked for (RFC 7519 §4.1): `exp`, `nbf`, `iss`,
//! `aud` and required presence, under a [`ClaimsPolicy`](super::ClaimsPolicy).
//!
//! These are jsonwebtoken's checks (its `validate`), made here because jsonwebtoken reads `exp`
//! and `nbf` as whole seconds and rounds a fraction to the nearest one, while a NumericDate is
//! any JSON number (RFC 7519 §2). Each comparison is jsonwebtoken's, with the claim's exact
//! value in place of the rounded one, against the same whole-second clock
//! (`jsonwebtoken::get_current_timestamp`):
//!
//! - expired when `exp < now - leeway`: for a whole `exp` exactly as before; a fractional `exp`
//!   counts as its whole second (it is floored), never the next one;
//! - not yet valid when `nbf > now + leeway`: a fractional `nbf` counts as the next whole second
//!   (it is ceiled), never the previous one.
//!
//! So a fraction never makes a token valid for longer, or sooner, than the second it lies in.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use crate::failure::TokenRejection;

/// A claim as found: absent (or `null`), of the wrong type, or read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Claim<T> {
    #[default]
    Absent,
    Invalid,
    Valid(T),
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, whole or fractional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NumericDate {
    Whole(u64),
    Fractional(f64),
}

impl NumericDate {
    /// The date from a JSON number; `None` if negative, not finite or beyond `u64`, as
    /// jsonwebtoken refuses them.
    pub(crate) fn from_f64(value: f64) -> Option<Self> {
        if !(value.is_finite() && value >= 0.0 && value < u64::MAX as f64) {
            return None;
        }
        // 2^53: beyond it every f64 is whole.
        if value.fract() == 0.0 && value < 9_007_199_254_740_992.0 {
            Some(Self::Whole(value as u64))
        } else {
            Some(Self::Fractional(value))
        }
    }

    /// The whole second the date lies in.
    pub(crate) fn floor(self) -> u64 {
        match self {
            Self::Whole(secs) => secs,
            Self::Fractional(secs) => secs.floor() as u64,
        }
    }

    /// The first whole second at or after the date.
    pub(crate) fn ceil(self) -> u64 {
        match self {
            Self::Whole(secs) => secs,
            Self::Fractional(secs) => secs.ceil() as u64,
        }
    }
}

/// The registered claims, as far as the checks need them; strings are borrowed.
#[derive(Deserialize)]
struct Registered<'a> {
    #[serde(default, deserialize_with = "date")]
    exp: Claim<NumericDate>,
    #[serde(default, deserialize_with = "date")]
    nbf: Claim<NumericDate>,
    #[serde(default, borrow, deserialize_with = "strings")]
    sub: Claim<Strings<'a>>,
    #[serde(default, borrow, deserialize_with = "strings")]
    iss: Claim<Strings<'a>>,
    #[serde(default, borrow, deserialize_with = "strings")]
    aud: Claim<Strings<'a>>,
}

/// A string claim, or an array of strings (`iss` and `aud` may be either, as jsonwebtoken
/// reads them).
#[derive(Debug)]
enum Strings<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Strings<'_> {
    /// Whether one of the strings is accepted.
    fn any_in(&self, accepted: &[String]) -> bool {
        match self {
            Self::One(one) => accepted.iter().any(|a| a == one),
            Self::Many(many) => many.iter().any(|m| accepted.iter().any(|a| a == m)),
        }
    }
}

/// What the policy asks of the registered claims, prepared once per key set.
#[derive(Debug, Clone)]
pub(crate) struct Checks {
    pub(crate) leeway: u64,
    pub(crate) issuers: Option<Vec<String>>,
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) require_exp: bool,
    pub(crate) require_nbf: bool,
    pub(crate) require_sub: bool,
    pub(crate) require_iss: bool,
    pub(crate) require_aud: bool,
}

impl Checks {
    /// Checks the claims in `payload` (the decoded JSON) at `now` (whole seconds since the epoch).
    pub(crate) fn check(&self, payload: &[u8], now: u64) -> Result<(), TokenRejection> {
        let claims: Registered<'_> =
            serde_json::from_slice(payload).map_err(|_| TokenRejection::Malformed)?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Registered<'_>, now: u64) -> Result<(), TokenRejection> {
        let missing = |required: bool, valid: bool| required && !valid;
        if missing(self.require_exp, matches!(claims.exp, Claim::Valid(_)))
            || missing(
                self.require_sub,
                matches!(claims.sub, Claim::Valid(Strings::One(_))),
            )
            || missing(self.require_iss, matches!(claims.iss, Claim::Valid(_)))
            || missing(self.require_aud, matches!(claims.aud, Claim::Valid(_)))
            || missing(self.require_nbf, matches!(claims.nbf, Claim::Valid(_)))
        {
            return Err(TokenRejection::MissingClaim);
        }
        if matches!(claims.exp, Claim::Invalid) || matches!(claims.nbf, Claim::Invalid) {
            return Err(TokenRejection::Malformed);
        }
        if let Claim::Valid(exp) = claims.exp
            && expired(exp, now, self.leeway)
        {
            return Err(TokenRejection::Expired);
        }
        if let Claim::Valid(nbf) = claims.nbf
            && immature(nbf, now, self.leeway)
        {
            return Err(TokenRejection::NotYetValid);
        }
        if let (Claim::Valid(iss), Some(accepted)) = (&claims.iss, &self.issuers)
            && !iss.any_in(accepted)
        {
            return Err(TokenRejection::WrongIssuer);
        }
        match (&claims.aud, &self.audiences) {
            // RFC 7519 §4.1.3: a recipient that does not identify itself with a value in `aud`
            // (here: one that has none configured) must refuse a token that carries one.
            (Claim::Valid(_), None) => Err(TokenRejection::WrongAudience),
            (Claim::Valid(aud), Some(accepted)) if !aud.any_in(accepted) => {
                Err(TokenRejection::WrongAudience)
            }
            _ => Ok(()),
        }
    }
}

/// `exp < now - leeway`, with `exp` exact: a fractional `exp` expires with its whole second.
pub(crate) fn expired(exp: NumericDate, now: u64, leeway: u64) -> bool {
    // For whole seconds `exp < bound` ⟺ `floor(exp) < bound`, since `bound` is whole.
    exp.floor() < now.saturating_sub(leeway)
}

/// `nbf > now + leeway`, with `nbf` exact: a fractional `nbf` starts with the next whole second.
pub(crate) fn immature(nbf: NumericDate, now: u64, leeway: u64) -> bool {
    // For whole seconds `nbf > bound` ⟺ `ceil(nbf) > bound`, since `bound` is whole.
    nbf.ceil() > now.saturating_add(leeway)
}

/// Reads a NumericDate without failing the whole payload on a value of the wrong type.
fn date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Claim<NumericDate>, D::Error> {
    struct DateVisitor;

    impl<'de> Visitor<'de> for DateVisitor {
        type Value = Claim<NumericDate>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Claim::Valid(NumericDate::Whole(value)))
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            // serde_json hands non-negative integers to `visit_u64`: this one is negative.
            Ok(Claim::Invalid)
        }

        fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
            Ok(NumericDate::from_f64(value).map_or(Claim::Invalid, Claim::Valid))
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Claim::Absent)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Claim::Invalid)
        }

        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Claim::Invalid)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Claim::Invalid)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Claim::Invalid)
        }
    }

    deserializer.deserialize_any(DateVisitor)
}

/// Reads a string or an array of strings without failing the whole payload otherwise.
fn strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Claim<Strings<'de>>, D::Error> {
    struct StringsVisitor;

    impl<'de> Visitor<'de> for StringsVisitor {
        type Value = Claim<Strings<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
            Ok(Claim::Valid(Strings::One(Cow::Borrowed(value))))
        }

        fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Claim::Valid(Strings::One(Cow::Owned(value.to_owned()))))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::new();
            let mut valid = true;
            while let Some(element) = seq.next_element_seed(ElementSeed)? {
                match element {
                    Some(s) => all.push(s),
                    None => valid = false,
                }
            }
            Ok(if valid {
                Claim::Valid(Strings::Many(all))
            } else {
                Claim::Invalid
            })
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Claim::Invalid)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Claim::Invalid)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Claim::Invalid)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Claim::Absent)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Claim::Invalid)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Claim::Invalid)
        }
    }

    deserializer.deserialize_any(StringsVisitor)
}

/// One element of a string array: the string, or `None` for anything else.
struct ElementSeed;

impl<'de> serde::de::DeserializeSeed<'de> for ElementSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct ElementVisitor;

        impl<'de> Visitor<'de> for ElementVisitor {
            type Value = Option<Cow<'de, str>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(value)))
            }

            fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(value.to_owned())))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }

        deserializer.deserialize_any(ElementVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn checks(leeway: u64) -> Checks {
        Checks {
            leeway,
            issuers: Some(vec!["https://i".into()]),
            audiences: Some(vec!["api".into()]),
            require_exp: true,
            require_nbf: false,
            require_sub: false,
            require_iss: true,
            require_aud: true,
        }
    }

    fn check(leeway: u64, claims: &str) -> Result<(), TokenRejection> {
        let payload = format!(r#"{{"iss":"https://i","aud":"api",{claims}}}"#);
        checks(leeway).check(payload.as_bytes(), NOW)
    }

    #[test]
    fn numeric_dates_are_any_json_number() {
        assert_eq!(check(0, r#""exp":1000000.5"#), Ok(()));
        assert_eq!(check(0, r#""exp":1.0000005E6"#), Ok(()));
        assert_eq!(check(0, r#""exp":1e6"#), Ok(()));
        assert_eq!(check(0, r#""exp":1000010, "nbf":999999.25"#), Ok(()));
        assert_eq!(
            NumericDate::from_f64(1.7957907E9),
            Some(NumericDate::Whole(1_795_790_700))
        );
    }

    #[test]
    fn a_fractional_exp_expires_with_its_whole_second() {
        // Whole `exp`: valid through `now - leeway` as jsonwebtoken has it.
        assert_eq!(check(0, r#""exp":1000000"#), Ok(()));
        assert_eq!(check(0, r#""exp":999999"#), Err(TokenRejection::Expired));
        // 999999.6 rounds to 1000000 (jsonwebtoken would accept); it lies in 999999: expired.
        assert_eq!(check(0, r#""exp":999999.6"#), Err(TokenRejection::Expired));
        assert_eq!(check(0, r#""exp":999999.4"#), Err(TokenRejection::Expired));
        // The leeway applies exactly as to a whole `exp`.
        assert_eq!(check(30, r#""exp":999970.9"#), Ok(()));
        assert_eq!(check(30, r#""exp":999969.9"#), Err(TokenRejection::Expired));
    }

    #[test]
    fn a_fractional_nbf_starts_with_the_next_whole_second() {
        let exp = r#""exp":2000000"#;
        assert_eq!(check(0, &format!(r#"{exp},"nbf":1000000"#)), Ok(()));
        // 1000000.4 rounds to 1000000 (jsonwebtoken would accept); it is not yet reached.
        assert_eq!(
            check(0, &format!(r#"{exp},"nbf":1000000.4"#)),
            Err(TokenRejection::NotYetValid)
        );
        assert_eq!(check(0, &format!(r#"{exp},"nbf":999999.5"#)), Ok(()));
        assert_eq!(check(30, &format!(r#"{exp},"nbf":1000029.9"#)), Ok(()));
        assert_eq!(
            check(30, &format!(r#"{exp},"nbf":1000030.1"#)),
            Err(TokenRejection::NotYetValid)
        );
    }

    #[test]
    fn refusals_in_jsonwebtokens_order() {
        let ok = r#""exp":2000000"#;
        // Present but not a date: missing when required, malformed otherwise.
        assert_eq!(
            check(0, r#""exp":"soon""#),
            Err(TokenRejection::MissingClaim)
        );
        assert_eq!(check(0, r#""exp":-1"#), Err(TokenRejection::MissingClaim));
        assert_eq!(
            check(0, r#""exp":1e300"#),
            Err(TokenRejection::MissingClaim)
        );
        assert_eq!(
            check(0, &format!(r#"{ok},"nbf":[1]"#)),
            Err(TokenRejection::Malformed)
        );
        assert_eq!(check(0, r#""exp":null"#), Err(TokenRejection::MissingClaim));
        let payload = br#"{"exp":2000000,"aud":"api"}"#;
        assert_eq!(
            checks(0).check(payload, NOW),
            Err(TokenRejection::MissingClaim)
        );
        let payload = br#"{"exp":2000000,"iss":"https://other","aud":"api"}"#;
        assert_eq!(
            checks(0).check(payload, NOW),
            Err(TokenRejection::WrongIssuer)
        );
        let payload = br#"{"exp":2000000,"iss":"https://i","aud":["x","api"]}"#;
        assert_eq!(checks(0).check(payload, NOW), Ok(()));
        let payload = br#"{"exp":2000000,"iss":"https://i","aud":["x",1]}"#;
        assert_eq!(
            checks(0).check(payload, NOW),
            Err(TokenRejection::MissingClaim)
        );
        let payload = br#"{"exp":2000000,"iss":"https://i","aud":[]}"#;
        assert_eq!(
            checks(0).check(payload, NOW),
            Err(TokenRejection::WrongAudience)
        );
        // Without audiences configured, any `aud` is refused (RFC 7519 §4.1.3).
        let mut open = checks(0);
        open.audiences = None;
        open.require_aud = false;
        let payload = br#"{"exp":2000000,"iss":"https://i","aud":"api"}"#;
        assert_eq!(open.check(payload, NOW), Err(TokenRejection::WrongAudience));
        let payload = br#"{"exp":2000000,"iss":"https://i"}"#;
        assert_eq!(open.check(payload, NOW), Ok(()));
        assert_eq!(
            checks(0).check(b"{\"exp\":", NOW),
            Err(TokenRejection::Malformed)
        );
    }

    #[test]
    fn the_same_verdicts_as_jsonwebtoken_for_whole_dates() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, decode, encode};
        let secret = b"a secret of at least thirty-two bytes!!";
        let now = jsonwebtoken::get_current_timestamp();
        let policy = crate::validate::ClaimsPolicy::new()
            .issuer("https://i")
            .audience("api")
            .leeway(5);
        let validation = policy.validation(&[Algorithm::HS256]);
        let ours = policy.checks();
        // Far enough from the second boundaries that the clock ticking between the two
        // verdicts can't change either.
        for (exp, nbf) in [
            (now + 100, None),
            (now - 100, None),
            (now - 3, None),
            (now + 100, Some(now + 3)),
            (now + 100, Some(now + 100)),
            (now + 100, Some(now - 100)),
        ] {
            let mut claims = serde_json::json!({"iss": "https://i", "aud": "api", "exp": exp});
            if let Some(nbf) = nbf {
                claims["nbf"] = nbf.into();
            }
            let token = encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            let theirs =
                decode::<serde_json::Value>(&token, &DecodingKey::from_secret(secret), &validation)
                    .map(|_| ())
                    .map_err(|e| crate::validate::keys::rejection(e.kind()));
            let payload = serde_json::to_vec(&claims).unwrap();
            assert_eq!(ours.check(&payload, now), theirs, "{claims}");
        }
    }
}
