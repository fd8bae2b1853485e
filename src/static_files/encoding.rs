//! Choosing a precompressed sibling (`file.br`, `file.gz`) from `Accept-Encoding`
//! (RFC 9110 section 12.5.3).

/// A precompressed representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `file.br`, `Content-Encoding: br`.
    Brotli,
    /// `file.gz`, `Content-Encoding: gzip`.
    Gzip,
}

impl Coding {
    /// The file name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` value (also the ETag suffix).
    pub fn name(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding to serve given `Accept-Encoding` and the siblings that exist: the acceptable
/// one (q > 0) with the highest q, Brotli on a tie. A coding the field does not name is
/// acceptable only through `*`. Without the field, nothing is compressed: a client that
/// says nothing may not decode anything.
pub fn choose(accept_encoding: Option<&[u8]>, has_br: bool, has_gz: bool) -> Option<Coding> {
    let accept = accept_encoding?;
    let (mut br, mut gzip, mut star) = (None, None, None);
    for element in accept.split(|&b| b == b',') {
        let mut parts = element.split(|&b| b == b';');
        let coding = crate::wsgi::head::trim_ows(parts.next().unwrap_or_default());
        let mut q = Some(1000);
        for param in parts {
            let param = crate::wsgi::head::trim_ows(param);
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = qvalue(&param[2..]);
            }
        }
        let Some(q) = q else { continue }; // a malformed weight: the element is ignored
        if coding.eq_ignore_ascii_case(b"br") {
            br = Some(q);
        } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            gzip = Some(q);
        } else if coding == b"*" {
            star = Some(q);
        }
    }
    let weight = |explicit: Option<u16>, exists: bool| {
        if exists {
            explicit.or(star).unwrap_or(0)
        } else {
            0
        }
    };
    let (br, gzip) = (weight(br, has_br), weight(gzip, has_gz));
    if br > 0 && br >= gzip {
        Some(Coding::Brotli)
    } else if gzip > 0 {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Coding::*;
    use super::*;

    fn pick(value: &str) -> Option<Coding> {
        choose(Some(value.as_bytes()), true, true)
    }

    #[test]
    fn brotli_is_preferred_when_weights_tie() {
        assert_eq!(pick("gzip, deflate, br"), Some(Brotli));
        assert_eq!(pick("gzip"), Some(Gzip));
        assert_eq!(pick("x-gzip"), Some(Gzip));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick(""), None);
        assert_eq!(choose(None, true, true), None);
    }

    #[test]
    fn weights_are_respected() {
        assert_eq!(pick("br;q=0.5, gzip;q=0.8"), Some(Gzip));
        assert_eq!(pick("br;q=0, gzip"), Some(Gzip));
        assert_eq!(pick("br;q=0, gzip;q=0"), None);
        assert_eq!(pick("BR ; Q=1.0, GZIP;q=0.999"), Some(Brotli));
        assert_eq!(pick("*"), Some(Brotli));
        assert_eq!(pick("*;q=0.1, br;q=0"), Some(Gzip));
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("gzip;q=0.0"), None);
        assert_eq!(
            pick("br;q=2, gzip"),
            Some(Gzip),
            "a bad weight drops the element"
        );
        assert_eq!(pick("br;q=0.0001"), None);
    }

    #[test]
    fn only_existing_siblings_are_chosen() {
        assert_eq!(choose(Some(b"br, gzip"), false, true), Some(Gzip));
        assert_eq!(choose(Some(b"br"), false, true), None);
        assert_eq!(choose(Some(b"br, gzip"), true, false), Some(Brotli));
        assert_eq!(choose(Some(b"br, gzip"), false, false), None);
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.125"), Some(125));
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b"0.1234"), None);
        assert_eq!(qvalue(b""), None);
        assert_eq!(qvalue(b"0."), Some(0));
    }
}
