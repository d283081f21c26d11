//! Opening a link to a target: a TCP or UDP connection, a serial port, or an
//! in-process connection to the built-in simulator. Settings come from the
//! device profile, then the target's own overrides, then the caller's client.
//!
//! A single-link target (a serial port, or HDLC over TCP to a serial-to-IP
//! converter when the target or profile says so) is never opened twice: each
//! link is a lease on the one open port, which disconnects the previous link
//! first ([`crate::transport::port`]).

use std::time::Instant;

use tokio::net::{TcpStream, UdpSocket};

use crate::profile::DeviceProfile;
use crate::sim::server::SimHandle;
use crate::transport::link::{Link, LinkError, LinkKind, LinkSettings, Trace};
use crate::transport::port::{PortOptions, PortSpec, SharedPort};
use crate::transport::target::{Endpoint, Parity, TargetSpec};
use crate::wire::hdlc::{Address, LinkParams};

/// The link settings for `client` on `target` with `profile`.
pub fn settings(target: &TargetSpec, profile: &DeviceProfile, client: u16) -> LinkSettings {
    let logical = target.logical.unwrap_or(profile.hdlc.server_logical);
    let physical = target.physical.unwrap_or(profile.hdlc.server_physical);
    let server_address = match profile.hdlc.address_size {
        Some(1) => Address::One(logical.min(0x7F) as u8),
        Some(2) => Address::Two {
            upper: logical.min(0x7F) as u8,
            lower: physical.min(0x7F) as u8,
        },
        Some(4) => Address::Four {
            upper: logical,
            lower: physical,
        },
        _ => Address::server(logical, physical),
    };
    LinkSettings {
        client,
        server_wport: target.wport.unwrap_or(profile.server_wport),
        server_address,
        hdlc_proposal: Some(LinkParams {
            max_info_tx: profile.hdlc.max_info_tx,
            max_info_rx: profile.hdlc.max_info_rx,
            window_tx: profile.hdlc.window,
            window_rx: profile.hdlc.window,
        }),
        response_timeout: profile.timeouts.response,
        max_payload: 65_535,
        line_bytes_per_second: match &target.endpoint {
            Endpoint::Serial(s) => {
                // Start, data, parity and stop bits; mode E may run at 300 baud.
                let bits = 1
                    + u32::from(s.data_bits)
                    + u32::from(s.stop_bits)
                    + u32::from(s.parity != Parity::None);
                let baud = if s.mode_e { 300 } else { s.baud };
                Some((baud / bits.max(1)).max(1))
            }
            _ => None,
        },
    }
}

/// The kind of link a target gives (for the simulator, the kind asked for).
pub fn native_kind(target: &TargetSpec) -> Option<LinkKind> {
    match target.endpoint {
        Endpoint::Sim { .. } => None,
        Endpoint::TcpWrapper { .. } => Some(LinkKind::Wrapper),
        Endpoint::UdpWrapper { .. } => Some(LinkKind::Udp),
        Endpoint::HdlcTcp { .. } | Endpoint::Serial(_) => Some(LinkKind::Hdlc),
    }
}

/// Does `target` carry one HDLC link at a time? A serial port does; HDLC over
/// TCP does when the target (`?single-link`) or the profile says so.
pub fn single_link(target: &TargetSpec, profile: &DeviceProfile) -> bool {
    match target.endpoint {
        Endpoint::Serial(_) => true,
        Endpoint::HdlcTcp { .. } => target.single_link || profile.hdlc.single_link,
        _ => false,
    }
}

/// A link for `s` on the shared port `spec`: the port is opened once, and the
/// previous link on it is disconnected first.
async fn on_port(
    spec: PortSpec,
    s: LinkSettings,
    profile: &DeviceProfile,
    description: String,
    start: Instant,
) -> Result<Link, LinkError> {
    let port = SharedPort::get(spec)?;
    let opts = PortOptions {
        connect_timeout: profile.timeouts.connect,
        inactivity_timeout: profile.hdlc.inactivity_timeout,
    };
    let mut trace = Trace::new(start);
    let lease = port.lease(&s, opts, &mut trace).await?;
    Ok(Link::hdlc_on_port(lease, s, description, trace))
}

/// Opens a link to `target` for `client`. For the simulator, `kind` chooses the
/// link; for other targets it must be the target's own kind (or `None`).
/// Connecting is bounded by the profile's connect timeout.
pub async fn open(
    target: &TargetSpec,
    profile: &DeviceProfile,
    client: u16,
    kind: Option<LinkKind>,
    sim: Option<&SimHandle>,
    start: Instant,
) -> Result<Link, LinkError> {
    let s = settings(target, profile, client);
    if let (Some(want), Some(have)) = (kind, native_kind(target))
        && want != have
    {
        return Err(LinkError::Usage(format!(
            "target {target} gives a {} link, not {}",
            have.feature(),
            want.feature()
        )));
    }
    let connect_timeout = profile.timeouts.connect;
    let bounded = |what: String| {
        LinkError::Connect(format!(
            "{what}: no connection within {}",
            humantime::format_duration(connect_timeout)
        ))
    };
    match &target.endpoint {
        Endpoint::Sim { .. } => {
            let sim = sim.ok_or_else(|| LinkError::Usage("the simulator is not running".into()))?;
            match kind.unwrap_or(LinkKind::Wrapper) {
                LinkKind::Wrapper => Ok(Link::wrapper(
                    sim.open_stream(false),
                    s,
                    "simulator (wrapper)".into(),
                    start,
                )),
                LinkKind::Hdlc => Ok(Link::hdlc(
                    sim.open_stream(true),
                    s,
                    "simulator (HDLC)".into(),
                    start,
                )),
                LinkKind::Udp => {
                    let peer = sim
                        .udp_address()
                        .await
                        .map_err(|e| LinkError::Connect(e.to_string()))?;
                    let socket = UdpSocket::bind("127.0.0.1:0")
                        .await
                        .map_err(|e| LinkError::Connect(e.to_string()))?;
                    Ok(Link::udp(
                        socket,
                        peer,
                        s,
                        format!("simulator (UDP {peer})"),
                        start,
                    ))
                }
            }
        }
        Endpoint::HdlcTcp { host, port } if single_link(target, profile) => {
            let spec = PortSpec::Tcp {
                host: host.clone(),
                port: *port,
            };
            let description = format!("HDLC over TCP {host}:{port}, one link at a time");
            on_port(spec, s, profile, description, start).await
        }
        Endpoint::TcpWrapper { host, port } | Endpoint::HdlcTcp { host, port } => {
            let addr = format!("{host}:{port}");
            let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&addr))
                .await
                .map_err(|_| bounded(addr.clone()))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => LinkError::Refused(addr.clone()),
                    _ => LinkError::Connect(format!("{addr}: {e}")),
                })?;
            let _ = stream.set_nodelay(true);
            if matches!(target.endpoint, Endpoint::HdlcTcp { .. }) {
                Ok(Link::hdlc(
                    Box::new(stream),
                    s,
                    format!("HDLC over TCP {addr}"),
                    start,
                ))
            } else {
                Ok(Link::wrapper(
                    Box::new(stream),
                    s,
                    format!("wrapper over TCP {addr}"),
                    start,
                ))
            }
        }
        Endpoint::UdpWrapper { host, port } => {
            let addr = format!("{host}:{port}");
            let peer = tokio::time::timeout(connect_timeout, tokio::net::lookup_host(&addr))
                .await
                .map_err(|_| bounded(addr.clone()))?
                .map_err(|e| LinkError::Connect(format!("{addr}: {e}")))?
                .next()
                .ok_or_else(|| LinkError::Connect(format!("{addr}: no address")))?;
            let local = if peer.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = UdpSocket::bind(local)
                .await
                .map_err(|e| LinkError::Connect(e.to_string()))?;
            Ok(Link::udp(
                socket,
                peer,
                s,
                format!("wrapper over UDP {addr}"),
                start,
            ))
        }
        Endpoint::Serial(serial) => {
            let spec = PortSpec::Serial(serial.clone());
            on_port(spec, s, profile, target.transport_description(), start).await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(target: &str, len: usize) -> Duration {
        let mut profile = DeviceProfile::default();
        profile.timeouts.response = Duration::from_secs(2);
        let t: TargetSpec = target.parse().unwrap();
        settings(&t, &profile, 16).write_limit(len)
    }

    #[test]
    fn writes_may_take_the_response_timeout_plus_the_time_on_a_serial_line() {
        // Network links: the response timeout.
        assert_eq!(limit("tcp://127.0.0.1:4059", 4096), Duration::from_secs(2));
        assert_eq!(limit("udp://127.0.0.1:4059", 4096), Duration::from_secs(2));
        // 9600 baud 8N1 is 10 bits a byte, 960 bytes a second.
        assert_eq!(
            limit("serial:///dev/ttyUSB0?baud=9600", 1920),
            Duration::from_secs(4)
        );
        // 7E1 is 10 bits as well; 8E1 is 11.
        assert_eq!(
            limit(
                "serial:///dev/ttyUSB0?baud=9600&parity=even&data-bits=7",
                960
            ),
            Duration::from_secs(3)
        );
        assert_eq!(
            limit("serial:///dev/ttyUSB0?baud=9600&parity=even", 872),
            Duration::from_secs(3)
        );
        // Mode E is allowed the 300 baud of its sign-on: 30 bytes a second.
        assert_eq!(
            limit("serial:///dev/ttyUSB0?mode-e", 300),
            Duration::from_secs(12)
        );
    }
}
