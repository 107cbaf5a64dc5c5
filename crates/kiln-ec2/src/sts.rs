//! STS on EC2's endpoint: `GetCallerIdentity` (what SDK fixtures and tools ask first,
//! on the same endpoint when one endpoint is configured), its answer and STS's error
//! envelope. A request is STS's when it says STS's API version.

use crate::xml::escape_into;

/// The API version every STS request names.
pub const VERSION: &str = "2011-06-15";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// STS's answer to GetCallerIdentity for an account's own access key: the account's
/// root user, as AWS names it.
pub fn caller_identity_document(account: &str, request_id: &str) -> String {
    let mut buf = String::with_capacity(512);
    buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetCallerIdentityResponse xmlns=\"");
    buf.push_str(XMLNS);
    buf.push_str("\"><GetCallerIdentityResult><Arn>arn:aws:iam::");
    escape_into(&mut buf, account);
    buf.push_str(":root</Arn><UserId>");
    escape_into(&mut buf, account);
    buf.push_str("</UserId><Account>");
    escape_into(&mut buf, account);
    buf.push_str("</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>");
    escape_into(&mut buf, request_id);
    buf.push_str("</RequestId></ResponseMetadata></GetCallerIdentityResponse>");
    buf
}

/// STS's error envelope: `<ErrorResponse><Error><Type>..<Code>..<Message>..`.
pub fn error_document(code: &str, message: &str, request_id: &str, sender: bool) -> String {
    let mut buf = String::with_capacity(256);
    buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"");
    buf.push_str(XMLNS);
    buf.push_str("\"><Error><Type>");
    buf.push_str(if sender { "Sender" } else { "Receiver" });
    buf.push_str("</Type><Code>");
    escape_into(&mut buf, code);
    buf.push_str("</Code><Message>");
    escape_into(&mut buf, message);
    buf.push_str("</Message></Error><RequestId>");
    escape_into(&mut buf, request_id);
    buf.push_str("</RequestId></ErrorResponse>");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_as_xml_with_the_fields_sdks_read() {
        let doc = caller_identity_document("123456789012", "r-1");
        let x = roxmltree::Document::parse(&doc).expect("xml");
        let text = |n: &str| x.descendants().find(|e| e.has_tag_name(n)).and_then(|e| e.text()).map(str::to_owned);
        assert_eq!(text("Account").as_deref(), Some("123456789012"));
        assert_eq!(text("Arn").as_deref(), Some("arn:aws:iam::123456789012:root"));
        let err = error_document("InvalidAction", "Could not find operation <AssumeRole>", "r-2", true);
        let x = roxmltree::Document::parse(&err).expect("xml");
        assert_eq!(x.root_element().tag_name().name(), "ErrorResponse");
        assert!(x.descendants().any(|e| e.has_tag_name("Code") && e.text() == Some("InvalidAction")));
    }
}
