//! `original_ip_detection_extensions` of the HTTP connection manager (Envoy's
//! `Http::OriginalIPDetection` extensions): who the client is when the listener does not use the
//! peer's address (`use_remote_address: false`).
//!
//! Two extensions, as Envoy 1.40 implements them (each case checked against the real binary):
//! - `envoy.http.original_ip_detection.xff` (`XffConfig`): with `xff_trusted_cidrs`, a peer
//!   inside the ranges is a trusted proxy and the client is the rightmost `x-forwarded-for`
//!   entry outside them (the leftmost when all are inside); a peer outside the ranges means no
//!   detection, and then the peer is appended to `x-forwarded-for`. With `xff_num_trusted_hops`
//!   N, the client is the (N+1)-th entry from the right. `skip_xff_append` (default true):
//!   whether the peer is appended after a detection.
//! - `envoy.http.original_ip_detection.custom_header` (`CustomHeaderConfig`): the client is the
//!   IP address in `header_name`; `allow_extension_to_set_address_as_trusted` lets
//!   `internal_address_config` judge it; `reject_with_status` answers a request without a
//!   usable header with that status (outside 400-511: 403) and an empty body.
//!
//! Parsed by `HcmConfig::parse`; asked in order by
//! `conn_manager_utility::mutate_request_headers`, the first detection winning.

use std::net::IpAddr;

use crate::config::{self, CidrRange, ErrorKind, Node};

use super::HeaderMap;

pub const XFF_NAME: &str = "envoy.http.original_ip_detection.xff";
pub const XFF_TYPE: &str = "envoy.extensions.http.original_ip_detection.xff.v3.XffConfig";
pub const CUSTOM_HEADER_NAME: &str = "envoy.http.original_ip_detection.custom_header";
pub const CUSTOM_HEADER_TYPE: &str =
    "envoy.extensions.http.original_ip_detection.custom_header.v3.CustomHeaderConfig";

/// One configured extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginalIpDetection {
    Xff {
        xff_num_trusted_hops: u32,
        /// Non-empty: judge by ranges instead of hop counting.
        xff_trusted_cidrs: Vec<CidrRange>,
        skip_xff_append: bool,
    },
    CustomHeader {
        /// Lower-case.
        header_name: String,
        allow_trusted_address_checks: bool,
        /// `reject_with_status`, already mapped into 400-511.
        reject_status: Option<u16>,
    },
}

/// What one extension made of a request (Envoy's `OriginalIPDetectionResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The client, if detected.
    pub address: Option<IpAddr>,
    /// The detected address may be judged internal by `internal_address_config`.
    pub allow_trusted_address_checks: bool,
    /// Answer the request with this status instead of forwarding it.
    pub reject_status: Option<u16>,
    /// Do not append the peer to `x-forwarded-for`.
    pub skip_xff_append: bool,
}

impl OriginalIpDetection {
    /// Parses one `original_ip_detection_extensions` entry (a `TypedExtensionConfig`).
    pub fn parse(entry: &Node) -> config::Result<OriginalIpDetection> {
        entry.check_fields(&["name", "typed_config"], &[])?;
        let typed = entry.required("typed_config")?;
        let (type_url, message) = typed.any()?;
        match config::type_name(type_url) {
            XFF_TYPE => Self::parse_xff(&message),
            CUSTOM_HEADER_TYPE => Self::parse_custom_header(&message),
            other => Err(typed.error_of(
                ErrorKind::NotSupported,
                format!(
                    "original IP detection extension '{other}' is not supported by nuncio (supported: {XFF_NAME}, {CUSTOM_HEADER_NAME})"
                ),
            )),
        }
    }

    fn parse_xff(node: &Node) -> config::Result<OriginalIpDetection> {
        node.check_fields(
            &[
                "xff_num_trusted_hops",
                "xff_trusted_cidrs",
                "skip_xff_append",
            ],
            &[],
        )?;
        let xff_num_trusted_hops = node.opt("xff_num_trusted_hops", Node::as_u32)?.unwrap_or(0);
        let xff_trusted_cidrs = match node.get("xff_trusted_cidrs") {
            None => None,
            Some(cidrs) => {
                cidrs.check_fields(&["cidrs"], &[])?;
                Some(cidrs.list("cidrs", CidrRange::parse)?)
            }
        };
        if xff_trusted_cidrs.is_some() && xff_num_trusted_hops > 0 {
            return Err(node.error("Cannot set both xff_num_trusted_hops and xff_trusted_cidrs"));
        }
        Ok(OriginalIpDetection::Xff {
            xff_num_trusted_hops,
            xff_trusted_cidrs: xff_trusted_cidrs.unwrap_or_default(),
            skip_xff_append: node
                .opt("skip_xff_append", Node::bool_value)?
                .unwrap_or(true),
        })
    }

    fn parse_custom_header(node: &Node) -> config::Result<OriginalIpDetection> {
        node.check_fields(
            &[
                "header_name",
                "allow_extension_to_set_address_as_trusted",
                "reject_with_status",
            ],
            &[],
        )?;
        let name_node = node.required("header_name")?;
        let header_name = name_node.non_empty_str()?;
        if !header_name.bytes().all(is_token_char) {
            return Err(name_node.error(format!("'{header_name}' is not a valid header name")));
        }
        let reject_status = match node.get("reject_with_status") {
            None => None,
            Some(status) => {
                status.check_fields(&["code"], &[])?;
                let code = status_code(&status.required("code")?)?;
                // Envoy's `toErrorCode`: only error statuses; anything else is 403.
                Some(if (400..=511).contains(&code) {
                    code
                } else {
                    403
                })
            }
        };
        Ok(OriginalIpDetection::CustomHeader {
            header_name: header_name.to_ascii_lowercase(),
            allow_trusted_address_checks: node
                .opt("allow_extension_to_set_address_as_trusted", Node::as_bool)?
                .unwrap_or(false),
            reject_status,
        })
    }

    /// Envoy's `detect`: who the client of a request with `headers` from `peer` is.
    pub fn detect(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Detection {
        match self {
            OriginalIpDetection::Xff {
                xff_num_trusted_hops,
                xff_trusted_cidrs,
                skip_xff_append,
            } => {
                let (address, allow) = if xff_trusted_cidrs.is_empty() {
                    super::conn_manager_utility::last_address_from_xff(
                        headers,
                        *xff_num_trusted_hops,
                    )
                } else {
                    let trusted = |ip: IpAddr| xff_trusted_cidrs.iter().any(|r| r.contains(ip));
                    if !peer.is_some_and(trusted) {
                        // An untrusted peer's x-forwarded-for says nothing; it is appended to.
                        return Detection {
                            address: None,
                            allow_trusted_address_checks: false,
                            reject_status: None,
                            skip_xff_append: false,
                        };
                    }
                    last_non_trusted_address_from_xff(headers, trusted)
                };
                Detection {
                    address,
                    allow_trusted_address_checks: allow,
                    reject_status: None,
                    skip_xff_append: *skip_xff_append,
                }
            }
            OriginalIpDetection::CustomHeader {
                header_name,
                allow_trusted_address_checks,
                reject_status,
            } => {
                let address = headers
                    .get_str(header_name)
                    .and_then(|v| v.parse::<IpAddr>().ok());
                Detection {
                    address,
                    allow_trusted_address_checks: address.is_some()
                        && *allow_trusted_address_checks,
                    reject_status: if address.is_some() {
                        None
                    } else {
                        *reject_status
                    },
                    skip_xff_append: true,
                }
            }
        }
    }
}

/// Envoy's `Utility::getLastNonTrustedAddressFromXFF`: from the right, the first
/// `x-forwarded-for` entry that is not `trusted` (all trusted: the leftmost); an entry that is
/// not an address ends the search with nothing. The address may be judged internal only when
/// the header held a single entry.
fn last_non_trusted_address_from_xff(
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> (Option<IpAddr>, bool) {
    let Some(xff) = headers.get_str("x-forwarded-for") else {
        return (None, false);
    };
    let single = !xff.contains(',');
    let mut last = None;
    for entry in xff.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            return (None, false);
        };
        last = Some(ip);
        if !trusted(ip) {
            break;
        }
    }
    (last, single)
}

/// RFC 9110 `tchar`: the bytes a header name may hold.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `envoy.type.v3.StatusCode`: a number or the enum's name (`Forbidden`).
fn status_code(node: &Node) -> config::Result<u16> {
    if let Ok(n) = node.as_u32() {
        return STATUS_NAMES
            .iter()
            .find(|(code, _)| u32::from(*code) == n)
            .map(|(code, _)| *code)
            .ok_or_else(|| node.error(format!("{n} is not an envoy.type.v3.StatusCode")));
    }
    let name = node.as_str()?;
    STATUS_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(code, _)| *code)
        .ok_or_else(|| node.error(format!("'{name}' is not an envoy.type.v3.StatusCode")))
}

/// `envoy.type.v3.StatusCode`'s values.
const STATUS_NAMES: &[(u16, &str)] = &[
    (100, "Continue"),
    (200, "OK"),
    (201, "Created"),
    (202, "Accepted"),
    (203, "NonAuthoritativeInformation"),
    (204, "NoContent"),
    (205, "ResetContent"),
    (206, "PartialContent"),
    (207, "MultiStatus"),
    (208, "AlreadyReported"),
    (226, "IMUsed"),
    (300, "MultipleChoices"),
    (301, "MovedPermanently"),
    (302, "Found"),
    (303, "SeeOther"),
    (304, "NotModified"),
    (305, "UseProxy"),
    (307, "TemporaryRedirect"),
    (308, "PermanentRedirect"),
    (400, "BadRequest"),
    (401, "Unauthorized"),
    (402, "PaymentRequired"),
    (403, "Forbidden"),
    (404, "NotFound"),
    (405, "MethodNotAllowed"),
    (406, "NotAcceptable"),
    (407, "ProxyAuthenticationRequired"),
    (408, "RequestTimeout"),
    (409, "Conflict"),
    (410, "Gone"),
    (411, "LengthRequired"),
    (412, "PreconditionFailed"),
    (413, "PayloadTooLarge"),
    (414, "URITooLong"),
    (415, "UnsupportedMediaType"),
    (416, "RangeNotSatisfiable"),
    (417, "ExpectationFailed"),
    (421, "MisdirectedRequest"),
    (422, "UnprocessableEntity"),
    (423, "Locked"),
    (424, "FailedDependency"),
    (426, "UpgradeRequired"),
    (428, "PreconditionRequired"),
    (429, "TooManyRequests"),
    (431, "RequestHeaderFieldsTooLarge"),
    (500, "InternalServerError"),
    (501, "NotImplemented"),
    (502, "BadGateway"),
    (503, "ServiceUnavailable"),
    (504, "GatewayTimeout"),
    (505, "HTTPVersionNotSupported"),
    (506, "VariantAlsoNegotiates"),
    (507, "InsufficientStorage"),
    (508, "LoopDetected"),
    (510, "NotExtended"),
    (511, "NetworkAuthenticationRequired"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(yaml: &str) -> config::Result<OriginalIpDetection> {
        let doc = parse_yaml(yaml).unwrap();
        OriginalIpDetection::parse(&Node::with_path(&doc, "ext"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n, v);
        }
        h
    }

    const CIDRS: &str = "typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig, xff_trusted_cidrs: {cidrs: [{address_prefix: 127.0.0.1, prefix_len: 32}, {address_prefix: 10.0.0.0, prefix_len: 8}]}}";

    #[test]
    fn trusted_cidrs_take_the_rightmost_untrusted_entry() {
        let x = parse(CIDRS).unwrap();
        let peer = Some("127.0.0.1".parse().unwrap());
        let detect = |xff: &str| x.detect(&headers(&[("x-forwarded-for", xff)]), peer);
        let d = detect("1.2.3.4,10.0.0.1");
        assert_eq!(d.address, Some("1.2.3.4".parse().unwrap()));
        assert!(!d.allow_trusted_address_checks && d.skip_xff_append);
        // All trusted: the leftmost.
        assert_eq!(
            detect("10.0.0.2, 10.0.0.1").address,
            Some("10.0.0.2".parse().unwrap())
        );
        assert!(detect("10.0.0.3").allow_trusted_address_checks);
        assert_eq!(detect("garbage,10.0.0.1").address, None);
        // A peer outside the ranges: no detection, append.
        let d = x.detect(
            &headers(&[("x-forwarded-for", "1.2.3.4")]),
            Some("192.0.2.1".parse().unwrap()),
        );
        assert_eq!((d.address, d.skip_xff_append), (None, false));
    }

    #[test]
    fn custom_header_and_its_rejection() {
        let c = parse("typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.custom_header.v3.CustomHeaderConfig, header_name: X-Real-IP, reject_with_status: {code: Unauthorized}, allow_extension_to_set_address_as_trusted: true}").unwrap();
        let d = c.detect(&headers(&[("x-real-ip", "10.0.0.9")]), None);
        assert_eq!(d.address, Some("10.0.0.9".parse().unwrap()));
        assert!(d.allow_trusted_address_checks);
        let d = c.detect(&headers(&[("x-real-ip", "bad")]), None);
        assert_eq!((d.address, d.reject_status), (None, Some(401)));
        // A status outside 400-511 rejects with 403, as Envoy does.
        let c = parse("typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.custom_header.v3.CustomHeaderConfig, header_name: x-real-ip, reject_with_status: {code: 200}}").unwrap();
        assert_eq!(c.detect(&headers(&[]), None).reject_status, Some(403));
    }

    #[test]
    fn bad_configs_name_their_path() {
        let e = parse("typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig, xff_num_trusted_hops: 1, xff_trusted_cidrs: {cidrs: []}}").unwrap_err();
        assert!(
            e.to_string()
                .contains("Cannot set both xff_num_trusted_hops and xff_trusted_cidrs"),
            "{e}"
        );
        let e = parse("typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.custom_header.v3.CustomHeaderConfig, header_name: \"a b\"}").unwrap_err();
        assert!(
            e.to_string().contains("ext.typed_config.header_name"),
            "{e}"
        );
        let e = parse("typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.custom_header.v3.CustomHeaderConfig, header_name: x, reject_with_status: {code: 999}}").unwrap_err();
        assert!(e.to_string().contains("reject_with_status.code"), "{e}");
        let e = parse("typed_config: {\"@type\": type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig, xff_trusted_cidrs: {cidrs: [{address_prefix: nope, prefix_len: 8}]}}").unwrap_err();
        assert!(e.to_string().contains("xff_trusted_cidrs.cidrs[0]"), "{e}");
        let e = parse("typed_config: {\"@type\": type.googleapis.com/x.Other}").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
