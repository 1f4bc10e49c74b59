//! Strict `application/x-www-form-urlencoded` parsing for OAuth endpoints.
//!
//! Stricter than `serde_urlencoded`: invalid percent-encoding or UTF-8 is an
//! error rather than silently replaced, and a parameter sent twice is refused
//! (RFC 6749 §3.1, §3.2: "Request and response parameters MUST NOT be included
//! more than once") unless the endpoint lists it as repeatable (`resource`,
//! RFC 8707 §2). Empty values count as absent (RFC 6749 §3.1).

use percent_encoding::percent_decode;

use super::error::OAuthError;

/// Parsed parameters in request order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The value of a single-valued parameter (`None` when absent or empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of a repeatable parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }
}

/// Checks the content type: `application/x-www-form-urlencoded`, optionally
/// with a `charset=utf-8` parameter.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), OAuthError> {
    let ok = content_type.is_some_and(|ct| {
        let mut parts = ct.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("");
        essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
            && parts.all(|p| {
                p.is_empty()
                    || p.eq_ignore_ascii_case("charset=utf-8")
                    || p.eq_ignore_ascii_case("charset=\"utf-8\"")
            })
    });
    if ok {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ))
    }
}

/// Parses `body`. `repeatable` names the parameters that may occur more than once.
pub fn parse(body: &[u8], repeatable: &[&str]) -> Result<Params, OAuthError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in body.split(|b| *b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let (k, v) = match piece.iter().position(|b| *b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        let key = decode(k)?;
        let value = decode(v)?;
        if key.is_empty() {
            return Err(OAuthError::invalid_request("a parameter has an empty name"));
        }
        if !repeatable.contains(&key.as_str()) && pairs.iter().any(|(n, _)| *n == key) {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{}` is included more than once",
                printable(&key)
            )));
        }
        pairs.push((key, value));
    }
    Ok(Params { pairs })
}

/// Decodes one `application/x-www-form-urlencoded` component strictly.
pub fn decode(raw: &[u8]) -> Result<String, OAuthError> {
    // '%' must be followed by two hex digits; percent_decode would pass it through.
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let ok = raw.len() > i + 2
                && raw[i + 1].is_ascii_hexdigit()
                && raw[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(OAuthError::invalid_request("malformed percent-encoding"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let decoded = percent_decode(&plus)
        .decode_utf8()
        .map_err(|_| OAuthError::invalid_request("parameters must be valid UTF-8"))?;
    if decoded
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(OAuthError::invalid_request(
            "parameters must not contain control characters",
        ));
    }
    Ok(decoded.into_owned())
}

/// A parameter name safe to echo in an error description.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    #[test]
    fn parses_and_decodes() {
        let p = parse(b"grant_type=client_credentials&scope=a+b%3Ac&empty=", &[]).unwrap();
        assert_eq!(p.get("grant_type"), Some("client_credentials"));
        assert_eq!(p.get("scope"), Some("a b:c"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.get("missing"), None);
    }

    //  * duplicated parameter
    //  * invalid UTF-8 after decoding
    //  * broken percent-encoding
    //  * control characters
    #[test]
    fn refuses_malformed_input() {
        for body in [
            &b"scope=a&scope=b"[..],
            b"scope=%ff%fe",
            b"scope=%zz",
            b"scope=abc%4",
            b"scope=%00",
            b"=x",
        ] {
            let e = parse(body, &[]).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{body:?}");
        }
    }

    #[test]
    fn resource_may_repeat_when_allowed() {
        let p = parse(
            b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb",
            &["resource"],
        )
        .unwrap();
        assert_eq!(p.all("resource"), vec!["https://a", "https://b"]);
    }

    #[test]
    fn content_type_must_be_form() {
        assert!(check_content_type(Some("application/x-www-form-urlencoded")).is_ok());
        assert!(
            check_content_type(Some("application/x-www-form-urlencoded; charset=UTF-8")).is_ok()
        );
        assert!(check_content_type(Some("application/json")).is_err());
        assert!(check_content_type(None).is_err());
    }
}
