//! A small streaming XML writer for EC2 responses and error envelopes.
//!
//! EC2 responses are shallow trees of text elements; a writer of twenty lines that
//! escapes every text node keeps allocation to one buffer. A general XML crate would
//! add a serde layer whose naming rules fight EC2's `fooSet/item` conventions.

use crate::XMLNS;

#[derive(Debug, Default)]
pub struct XmlWriter {
    buf: String,
    open: Vec<&'static str>,
}

impl XmlWriter {
    /// Starts `<{action}Response xmlns=...><requestId>..</requestId>`.
    pub fn response(action: &str, request_id: &str) -> Self {
        let mut w = Self { buf: String::with_capacity(1024), open: Vec::new() };
        w.buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        w.buf.push_str(action);
        w.buf.push_str("Response xmlns=\"");
        w.buf.push_str(XMLNS);
        w.buf.push_str("\">");
        w.elem("requestId", request_id);
        w
    }

    /// Closes everything still open and the response root.
    pub fn finish(mut self, action: &str) -> String {
        while let Some(name) = self.open.pop() {
            self.close_tag(name);
        }
        self.buf.push_str("</");
        self.buf.push_str(action);
        self.buf.push_str("Response>");
        self.buf
    }

    pub fn start(&mut self, name: &'static str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self.open.push(name);
        self
    }

    pub fn end(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.close_tag(name);
        }
        self
    }

    fn close_tag(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// `<name>text</name>`, escaped.
    pub fn elem(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        escape_into(&mut self.buf, &text.to_string());
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// `elem`, or nothing for `None`.
    pub fn opt<T: std::fmt::Display>(&mut self, name: &str, text: Option<T>) -> &mut Self {
        if let Some(t) = text {
            self.elem(name, t);
        }
        self
    }

    /// `<name>` holding one `<item>` per element, each written by `f`.
    pub fn set<T>(
        &mut self,
        name: &'static str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.start(name);
        for item in items {
            self.start("item");
            f(self, item);
            self.end();
        }
        self.end()
    }

    /// `<name><item>text</item>…</name>` for a list of strings.
    pub fn strings<T: std::fmt::Display>(
        &mut self,
        name: &'static str,
        items: impl IntoIterator<Item = T>,
    ) -> &mut Self {
        self.start(name);
        for item in items {
            self.elem("item", item);
        }
        self.end()
    }

    /// `tagSet`, left out when there are no tags (as EC2 does).
    pub fn tags<'a>(&mut self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> &mut Self {
        let tags: Vec<_> = tags.into_iter().collect();
        if !tags.is_empty() {
            self.set("tagSet", tags, |w, (k, v)| {
                w.elem("key", k).elem("value", v);
            });
        }
        self
    }
}

/// EC2's error envelope: `<Response><Errors><Error>..</Error></Errors><RequestID>`.
pub fn error_document(code: &str, message: &str, request_id: &str) -> String {
    let mut buf = String::with_capacity(256);
    buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>");
    escape_into(&mut buf, code);
    buf.push_str("</Code><Message>");
    escape_into(&mut buf, message);
    buf.push_str("</Message></Error></Errors><RequestID>");
    escape_into(&mut buf, request_id);
    buf.push_str("</RequestID></Response>");
    buf
}

pub(crate) fn escape_into(buf: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => buf.push_str("&lt;"),
            '>' => buf.push_str("&gt;"),
            '&' => buf.push_str("&amp;"),
            '"' => buf.push_str("&quot;"),
            '\'' => buf.push_str("&apos;"),
            // Control characters other than tab and newlines are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                buf.push_str("&#xFFFD;");
            }
            c => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_sets_and_escapes() {
        let mut w = XmlWriter::response("DescribeKeyPairs", "req-1");
        w.set("keySet", ["a<b"], |w, name| {
            w.elem("keyName", name);
        });
        let xml = w.finish("DescribeKeyPairs");
        assert!(xml.contains("<DescribeKeyPairsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"));
        assert!(xml.contains("<requestId>req-1</requestId>"));
        assert!(xml.contains("<keySet><item><keyName>a&lt;b</keyName></item></keySet>"));
        assert!(xml.ends_with("</DescribeKeyPairsResponse>"));
    }

    #[test]
    fn error_envelope_is_ec2s() {
        let xml = error_document("InvalidGroup.NotFound", "no 'x'", "r");
        assert!(xml.contains("<Response><Errors><Error><Code>InvalidGroup.NotFound</Code>"));
        assert!(xml.contains("<Message>no &apos;x&apos;</Message>"));
        assert!(xml.contains("<RequestID>r</RequestID>"));
    }
}
