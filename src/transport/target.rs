//! The target syntax shared by every command:
//!
//! | target | meaning |
//! |---|---|
//! | `sim` | the built-in simulated meter (in-process); `sim?quirk=NAME` (repeatable) switches on a fault |
//! | `tcp://host:port` | TCP wrapper (IEC 62056-47), port 4059 by default |
//! | `udp://host:port` | UDP wrapper |
//! | `hdlc+tcp://host:port` | HDLC frames over TCP (a serial-to-IP converter); add `single-link` when the converter has one serial line behind it |
//! | `serial:///dev/ttyX?baud=9600` | HDLC over a serial port; `parity=none|even|odd`, `data-bits`, `stop-bits` |
//! | `serial:///dev/ttyX?mode-e` | optical probe: IEC 62056-21 mode E sign-on at 300 baud, then HDLC |
//!
//! Any target may add `client=N`, `logical=N`, `physical=N` (HDLC server address)
//! and `wport=N` (wrapper server wPort) to override the device profile.
//!
//! A serial port, and an `hdlc+tcp` target with `single-link` (or a device
//! profile with `hdlc: {single-link: true}`), carries one HDLC link at a time:
//! switching client disconnects the previous one on the same open port
//! ([`crate::transport::port`]).

use std::fmt;
use std::str::FromStr;

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// Serial line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    pub path: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    /// Start with the IEC 62056-21 mode E handshake.
    pub mode_e: bool,
}

/// Where a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Sim { quirks: Vec<String> },
    TcpWrapper { host: String, port: u16 },
    UdpWrapper { host: String, port: u16 },
    HdlcTcp { host: String, port: u16 },
    Serial(SerialSettings),
}

/// A parsed target with its overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The text as the user wrote it (used as the target's name in reports).
    pub text: String,
    pub endpoint: Endpoint,
    pub client: Option<u16>,
    pub logical: Option<u16>,
    pub physical: Option<u16>,
    pub wport: Option<u16>,
    /// The target carries one HDLC link at a time (always so for a serial port).
    pub single_link: bool,
}

impl TargetSpec {
    /// Does this target speak HDLC?
    pub fn is_hdlc(&self) -> bool {
        matches!(
            self.endpoint,
            Endpoint::HdlcTcp { .. } | Endpoint::Serial(_)
        )
    }

    /// A human description of the transport, for reports.
    pub fn transport_description(&self) -> String {
        match &self.endpoint {
            Endpoint::Sim { quirks } if quirks.is_empty() => "built-in simulator".into(),
            Endpoint::Sim { quirks } => {
                format!("built-in simulator with quirks {}", quirks.join(", "))
            }
            Endpoint::TcpWrapper { host, port } => format!("wrapper over TCP {host}:{port}"),
            Endpoint::UdpWrapper { host, port } => format!("wrapper over UDP {host}:{port}"),
            Endpoint::HdlcTcp { host, port } if self.single_link => {
                format!("HDLC over TCP {host}:{port}, one link at a time")
            }
            Endpoint::HdlcTcp { host, port } => format!("HDLC over TCP {host}:{port}"),
            Endpoint::Serial(s) => {
                let p = match s.parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                format!(
                    "HDLC over serial {} {} {}{}{}{}",
                    s.path,
                    s.baud,
                    s.data_bits,
                    p,
                    s.stop_bits,
                    if s.mode_e {
                        " after IEC 62056-21 mode E"
                    } else {
                        ""
                    }
                )
            }
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a target text is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid target {text:?}: {reason}\n  targets look like: sim, sim?quirk=NAME, tcp://HOST:4059, udp://HOST:4059, hdlc+tcp://HOST:PORT[?single-link], serial:///dev/ttyUSB0?baud=9600, serial:///dev/ttyUSB0?mode-e"
)]
pub struct TargetError {
    pub text: String,
    pub reason: String,
}

impl FromStr for TargetSpec {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| TargetError {
            text: text.to_owned(),
            reason,
        };
        let t = text.trim();
        // `sim` is not a URL; give it a scheme so the query parses the same way.
        let url_text = if t == "sim" || t.starts_with("sim?") {
            format!("sim://{}", &t[3..])
        } else {
            t.to_owned()
        };
        let url = url::Url::parse(&url_text).map_err(|e| fail(e.to_string()))?;
        let mut spec = TargetSpec {
            text: t.to_owned(),
            endpoint: Endpoint::Sim { quirks: vec![] },
            client: None,
            logical: None,
            physical: None,
            wport: None,
            single_link: false,
        };
        let mut quirks = Vec::new();
        let mut baud = None;
        let mut parity = None;
        let mut data_bits = None;
        let mut stop_bits = None;
        let mut mode_e = false;
        let num = |k: &str, v: &str| -> Result<u32, TargetError> {
            v.parse::<u32>()
                .map_err(|_| fail(format!("`{k}={v}` is not a number")))
        };
        let u16_of = |k: &str, v: &str| -> Result<u16, TargetError> {
            let n = num(k, v)?;
            u16::try_from(n).map_err(|_| fail(format!("`{k}={v}` is out of range")))
        };
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "quirk" => quirks.push(v.into_owned()),
                "client" => spec.client = Some(u16_of(&k, &v)?),
                "logical" => spec.logical = Some(u16_of(&k, &v)?),
                "physical" => spec.physical = Some(u16_of(&k, &v)?),
                "wport" => spec.wport = Some(u16_of(&k, &v)?),
                "baud" => baud = Some(num(&k, &v)?),
                "parity" => {
                    parity = Some(match v.as_ref() {
                        "none" | "n" | "N" => Parity::None,
                        "even" | "e" | "E" => Parity::Even,
                        "odd" | "o" | "O" => Parity::Odd,
                        other => {
                            return Err(fail(format!("parity {other:?}: use none, even or odd")));
                        }
                    })
                }
                "data-bits" => data_bits = Some(num(&k, &v)?),
                "stop-bits" => stop_bits = Some(num(&k, &v)?),
                "mode-e" => mode_e = true,
                "single-link" => spec.single_link = true,
                other => return Err(fail(format!("unknown option `{other}`"))),
            }
        }
        let host_port = |default: Option<u16>| -> Result<(String, u16), TargetError> {
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| fail("a host is required".into()))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = url
                .port()
                .or(default)
                .ok_or_else(|| fail("a port is required".into()))?;
            Ok((host, port))
        };
        let has_quirks = !quirks.is_empty();
        let serial_only = baud.is_some()
            || parity.is_some()
            || data_bits.is_some()
            || stop_bits.is_some()
            || mode_e;
        spec.endpoint = match url.scheme() {
            "sim" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) || url.path().len() > 1 {
                    return Err(fail("`sim` takes only options, like sim?quirk=NAME".into()));
                }
                Endpoint::Sim { quirks }
            }
            "tcp" => {
                let (host, port) = host_port(Some(4059))?;
                Endpoint::TcpWrapper { host, port }
            }
            "udp" => {
                let (host, port) = host_port(Some(4059))?;
                Endpoint::UdpWrapper { host, port }
            }
            "hdlc+tcp" => {
                let (host, port) = host_port(None)?;
                Endpoint::HdlcTcp { host, port }
            }
            "serial" => {
                let path = url.path().to_owned();
                if path.is_empty() || path == "/" {
                    return Err(fail(
                        "a device path is required, like serial:///dev/ttyUSB0".into(),
                    ));
                }
                let data_bits = data_bits.unwrap_or(8);
                let stop_bits = stop_bits.unwrap_or(1);
                if !(5..=8).contains(&data_bits) {
                    return Err(fail(format!("data-bits {data_bits}: use 5 to 8")));
                }
                if !(1..=2).contains(&stop_bits) {
                    return Err(fail(format!("stop-bits {stop_bits}: use 1 or 2")));
                }
                Endpoint::Serial(SerialSettings {
                    path,
                    baud: baud.unwrap_or(9600),
                    parity: parity.unwrap_or(Parity::None),
                    data_bits: data_bits as u8,
                    stop_bits: stop_bits as u8,
                    mode_e,
                })
            }
            other => return Err(fail(format!("unknown scheme `{other}`"))),
        };
        if serial_only && !matches!(spec.endpoint, Endpoint::Serial(_)) {
            return Err(fail(
                "baud, parity, data-bits, stop-bits and mode-e apply to serial targets only".into(),
            ));
        }
        if spec.single_link && !spec.is_hdlc() {
            return Err(fail(
                "single-link applies to HDLC targets (hdlc+tcp, serial) only".into(),
            ));
        }
        if let Endpoint::Serial(_) = spec.endpoint {
            spec.single_link = true;
        }
        if has_quirks && !matches!(spec.endpoint, Endpoint::Sim { .. }) {
            return Err(fail("quirks apply to the simulator only".into()));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetSpec {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn accepts_every_documented_form() {
        assert_eq!(p("sim").endpoint, Endpoint::Sim { quirks: vec![] });
        assert_eq!(
            p("sim?quirk=accepts-replay&quirk=ignores-tag").endpoint,
            Endpoint::Sim {
                quirks: vec!["accepts-replay".into(), "ignores-tag".into()]
            }
        );
        assert_eq!(
            p("tcp://10.1.2.3").endpoint,
            Endpoint::TcpWrapper {
                host: "10.1.2.3".into(),
                port: 4059
            }
        );
        assert_eq!(
            p("udp://[::1]:5000").endpoint,
            Endpoint::UdpWrapper {
                host: "::1".into(),
                port: 5000
            }
        );
        assert_eq!(
            p("hdlc+tcp://localhost:10001?physical=17&logical=1&client=16"),
            TargetSpec {
                text: "hdlc+tcp://localhost:10001?physical=17&logical=1&client=16".into(),
                endpoint: Endpoint::HdlcTcp {
                    host: "localhost".into(),
                    port: 10001
                },
                client: Some(16),
                logical: Some(1),
                physical: Some(17),
                wport: None,
                single_link: false,
            }
        );
        assert!(p("hdlc+tcp://converter:10001?single-link").single_link);
        assert_eq!(
            p("hdlc+tcp://converter:10001?single-link").transport_description(),
            "HDLC over TCP converter:10001, one link at a time"
        );
        assert!(p("serial:///dev/ttyUSB0").single_link);
        let s = p("serial:///dev/ttyUSB0?baud=19200&parity=even&data-bits=7");
        assert_eq!(
            s.endpoint,
            Endpoint::Serial(SerialSettings {
                path: "/dev/ttyUSB0".into(),
                baud: 19200,
                parity: Parity::Even,
                data_bits: 7,
                stop_bits: 1,
                mode_e: false
            })
        );
        assert!(p("serial:///dev/ttyUSB0?mode-e").is_hdlc());
        assert_eq!(
            p("serial:///dev/ttyUSB0?mode-e").transport_description(),
            "HDLC over serial /dev/ttyUSB0 9600 8N1 after IEC 62056-21 mode E"
        );
    }

    #[test]
    fn rejects_bad_targets_with_a_reason() {
        for (bad, why) in [
            ("ftp://x", "unknown scheme"),
            ("hdlc+tcp://host", "a port is required"),
            ("tcp://h?baud=9600", "serial targets only"),
            ("tcp://h?quirk=x", "simulator only"),
            ("serial:///dev/x?parity=mark", "parity"),
            ("sim?bogus=1", "unknown option"),
            ("tcp://h?client=70000", "out of range"),
            ("serial://", "device path"),
            ("tcp://h?single-link", "HDLC targets"),
        ] {
            let e = bad.parse::<TargetSpec>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
