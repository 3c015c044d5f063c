//! Parsing values that come from pod annotations and labels: outside input,
//! validated strictly, errors naming what was wrong.

use crate::{Pod, PolicyError};

/// The most ports [`parse_port_list`] accepts in one list.
pub const MAX_PORTS: usize = 64;

/// A port list that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortListError {
    /// An empty item (`"80,,90"`, a trailing comma).
    #[error("empty item at position {0}")]
    EmptyItem(usize),
    /// Not a decimal number.
    #[error("{0:?} is not a port number")]
    NotANumber(String),
    /// Outside 1..=65535.
    #[error("port {0} is out of range 1..=65535")]
    OutOfRange(String),
    /// The same port twice.
    #[error("port {0} is listed twice")]
    Duplicate(u16),
    /// More ports than allowed.
    #[error("{count} ports listed, at most {max} allowed")]
    TooMany {
        /// How many were listed.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Parse a comma-separated port list such as `"4789, 9000"` with at most
/// [`MAX_PORTS`] ports. See [`parse_port_list_max`].
pub fn parse_port_list(s: &str) -> Result<Vec<u16>, PortListError> {
    parse_port_list_max(s, MAX_PORTS)
}

/// Parse a comma-separated port list with at most `max` ports: decimal ports
/// in 1..=65535, no duplicates, spaces around items allowed, order kept. A
/// value that is empty or only spaces is the empty list.
pub fn parse_port_list_max(s: &str, max: usize) -> Result<Vec<u16>, PortListError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<&str> = s.split(',').map(str::trim).collect();
    if items.len() > max {
        return Err(PortListError::TooMany {
            count: items.len(),
            max,
        });
    }
    let mut ports = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() {
            return Err(PortListError::EmptyItem(i + 1));
        }
        if !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PortListError::NotANumber(item.to_string()));
        }
        let port = match item.parse::<u32>() {
            Ok(p @ 1..=65535) => p as u16,
            _ => return Err(PortListError::OutOfRange(item.to_string())),
        };
        if ports.contains(&port) {
            return Err(PortListError::Duplicate(port));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// The ports listed in annotation `key` of `pod` (at most `max`); `Ok(None)`
/// when the pod does not have the annotation. A bad value is `invalid-input`
/// naming the annotation.
pub fn annotation_ports(pod: &Pod, key: &str, max: usize) -> Result<Option<Vec<u16>>, PolicyError> {
    pod.annotation(key)
        .map(|v| {
            parse_port_list_max(v, max).map_err(|e| {
                PolicyError::invalid_input(format!(
                    "pod {}: annotation {key}={v:?}: {e}",
                    pod.display_name()
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Result<Vec<u16>, PortListError>;

    #[test]
    fn port_lists() {
        use PortListError::*;
        let cases: &[(&str, usize, Parsed)] = &[
            ("4789,9000", 64, Ok(vec![4789, 9000])),
            (" 4789 , 9000 ", 64, Ok(vec![4789, 9000])),
            ("9000,4789", 64, Ok(vec![9000, 4789])),
            ("1,65535", 64, Ok(vec![1, 65535])),
            ("", 64, Ok(vec![])),
            ("   ", 64, Ok(vec![])),
            ("0", 64, Err(OutOfRange("0".into()))),
            ("65536", 64, Err(OutOfRange("65536".into()))),
            (
                "99999999999999999999",
                64,
                Err(OutOfRange("99999999999999999999".into())),
            ),
            ("80,,90", 64, Err(EmptyItem(2))),
            ("80,", 64, Err(EmptyItem(2))),
            ("+80", 64, Err(NotANumber("+80".into()))),
            ("-1", 64, Err(NotANumber("-1".into()))),
            ("80-90", 64, Err(NotANumber("80-90".into()))),
            ("http", 64, Err(NotANumber("http".into()))),
            ("8 0", 64, Err(NotANumber("8 0".into()))),
            ("80,80", 64, Err(Duplicate(80))),
            ("80,080", 64, Err(Duplicate(80))),
            ("1,2,3", 2, Err(TooMany { count: 3, max: 2 })),
            ("1,2", 2, Ok(vec![1, 2])),
        ];
        for (input, max, want) in cases {
            assert_eq!(&parse_port_list_max(input, *max), want, "{input:?}");
        }
        assert_eq!(parse_port_list("4789,9000"), Ok(vec![4789, 9000]));
    }

    #[test]
    fn annotation_errors_name_the_annotation() {
        let pod = Pod::new("ns", "p").with_annotation("afxdp.io/udp-ports", "80,x");
        assert_eq!(annotation_ports(&pod, "afxdp.io/tcp-ports", 8), Ok(None));
        let e = annotation_ports(&pod, "afxdp.io/udp-ports", 8).expect_err("bad value");
        assert_eq!(e.code, crate::ErrorCode::InvalidInput);
        assert!(e.message.contains("afxdp.io/udp-ports"), "{}", e.message);
        assert!(e.message.contains("ns/p"), "{}", e.message);
    }
}
