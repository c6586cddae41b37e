//! A strict well-formedness check of JSON text, run before nanoserde's decoder sees a reply.
//!
//! nanoserde 0.2's JSON decoder panics on some malformed input (`unimplemented!` while
//! skipping an unknown key at the end of the text) and recurses without bound; its binary
//! decoder sizes vectors from lengths read off the wire. Checking the text first (RFC 8259
//! grammar, nesting at most `MAX_DEPTH`) leaves the decoder only well-formed documents.

const MAX_DEPTH: usize = 32;

/// `Ok` when `text` is one well-formed JSON value, else the byte offset and the cause.
pub fn well_formed(text: &str) -> Result<(), String> {
    let mut parser = Parser { bytes: text.as_bytes(), at: 0 };
    parser.skip_space();
    parser.value(0)?;
    parser.skip_space();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing bytes after the value"));
    }
    Ok(())
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, cause: &str) -> String {
        format!("byte {}: {cause}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", byte as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.container(depth, b'}', true),
            Some(b'[') => self.container(depth, b']', false),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn container(&mut self, depth: usize, close: u8, keyed: bool) -> Result<(), String> {
        self.at += 1;
        self.skip_space();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        loop {
            if keyed {
                self.string()?;
                self.skip_space();
                self.expect(b':')?;
                self.skip_space();
            }
            self.value(depth + 1)?;
            self.skip_space();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.skip_space();
                }
                Some(c) if c == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or the end of the container")),
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            self.at += 1;
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(self.error("bad \\u escape"));
                                }
                                self.at += 1;
                            }
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.error("control character in a string")),
                Some(_) => self.at += 1,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("unknown literal"))
        }
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let start = p.at;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.at += 1;
            }
            p.at > start
        };
        if !digits(self) {
            return Err(self.error("expected digits"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.error("expected digits after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.error("expected exponent digits"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::well_formed;

    #[test]
    fn accepts_documents() {
        for text in [r#"{"a":[1,-2.5e3,true,false,null,"x\"\u00e9"]}"#, "[]", " {} ", r#""s""#, "0"]
        {
            assert_eq!(well_formed(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn refuses_what_would_trip_the_decoder() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        for text in [
            r#"{"Policies":[[{"path":"/mnt","recuirsve":"#,
            "",
            "{",
            r#"{"a" 1}"#,
            "[1,]",
            "01x",
            "tru",
            "\"\\q\"",
            "{} {}",
            &deep,
        ] {
            assert!(well_formed(text).is_err(), "{text}");
        }
    }
}
