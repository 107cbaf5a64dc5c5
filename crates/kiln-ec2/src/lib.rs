//! The EC2 Query wire format, version 2016-11-15, and nothing else: decoding form
//! parameters into typed requests, writing XML responses and error envelopes, filters,
//! pagination tokens and AWS Signature Version 4 verification. Pure: no I/O, no state.

pub mod error;
pub mod filter;
pub mod page;
pub mod params;
pub mod requests;
pub mod sigv4;
pub mod sts;
pub mod xml;

pub use error::Ec2Error;
pub use filter::Filter;
pub use params::Params;
pub use xml::XmlWriter;

/// The API version Kiln speaks.
pub const API_VERSION: &str = "2016-11-15";
/// EC2's XML namespace.
pub const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
