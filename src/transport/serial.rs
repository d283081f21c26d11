//! Serial ports (tokio-serial) and the IEC 62056-21 mode E handshake of optical
//! probes (dlms-facts.md 6.2): open at 300 baud 7E1, send `/?!<CR><LF>`, read
//! the identification `/XXXZ...<CR><LF>` (Z = baud character), acknowledge
//! with `ACK 2 Z 2 <CR><LF>` (protocol control 2 = HDLC, mode 2 = binary), then
//! switch to the announced baud rate at 8N1 and speak HDLC. The meter returns
//! to the sign-on after each HDLC session (a DISC, its inactivity timeout);
//! [`crate::transport::port`] decides when to sign on again.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{
    ClearBuffer, DataBits, Parity as SerialParity, SerialPort, SerialPortBuilderExt, SerialStream,
    StopBits,
};

use crate::runner::event::Direction;
use crate::transport::link::{BoxStream, LinkError, Trace};
use crate::transport::target::{Parity, SerialSettings};

/// Longest identification line accepted (IEC 62056-21 allows 16 characters of identification).
const MAX_IDENT: usize = 64;

/// The baud rate of an IEC 62056-21 baud character ('0' = 300 .. '6' = 19200).
pub fn baud_of(z: u8) -> Option<u32> {
    Some(match z {
        b'0' => 300,
        b'1' => 600,
        b'2' => 1200,
        b'3' => 2400,
        b'4' => 4800,
        b'5' => 9600,
        b'6' => 19200,
        _ => return None,
    })
}

fn io(path: &str, what: &str, e: impl std::fmt::Display) -> LinkError {
    LinkError::Connect(format!("{path}: {what}: {e}"))
}

fn configure(
    port: &mut SerialStream,
    path: &str,
    baud: u32,
    parity: Parity,
    data_bits: u8,
    stop_bits: u8,
) -> Result<(), LinkError> {
    let p = match parity {
        Parity::None => SerialParity::None,
        Parity::Even => SerialParity::Even,
        Parity::Odd => SerialParity::Odd,
    };
    let d = match data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let s = if stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    port.set_baud_rate(baud)
        .map_err(|e| io(path, "cannot set the baud rate", e))?;
    port.set_parity(p)
        .map_err(|e| io(path, "cannot set the parity", e))?;
    port.set_data_bits(d)
        .map_err(|e| io(path, "cannot set the data bits", e))?;
    port.set_stop_bits(s)
        .map_err(|e| io(path, "cannot set the stop bits", e))?;
    Ok(())
}

/// Opens a serial port at its first line settings: 300 baud 7E1 for mode E
/// (the sign-on comes next), otherwise the target's own settings.
pub fn open_port(s: &SerialSettings) -> Result<SerialStream, LinkError> {
    let start_baud = if s.mode_e { 300 } else { s.baud };
    let mut port = tokio_serial::new(&s.path, start_baud)
        .open_native_async()
        .map_err(|e| io(&s.path, "cannot open", e))?;
    if s.mode_e {
        configure(&mut port, &s.path, 300, Parity::Even, 7, 1)?;
    } else {
        configure(
            &mut port,
            &s.path,
            s.baud,
            s.parity,
            s.data_bits,
            s.stop_bits,
        )?;
    }
    Ok(port)
}

/// Opens a serial port; with `mode_e`, runs the IEC 62056-21 handshake first.
pub async fn open(s: &SerialSettings, timeout: Duration) -> Result<BoxStream, LinkError> {
    let mut port = open_port(s)?;
    if s.mode_e {
        sign_on(&mut port, s, timeout, None).await?;
    }
    Ok(Box::new(port))
}

/// The IEC 62056-21 mode E sign-on on an open port, as the client does it each
/// time the meter is back in its initial state (after the port opened, after
/// an HDLC DISC, after the meter's inactivity timeout): input still pending is
/// dropped, the line goes to 300 baud 7E1, the handshake runs within `timeout`,
/// and the line switches to the announced rate at 8N1 for HDLC.
pub async fn sign_on(
    port: &mut SerialStream,
    s: &SerialSettings,
    timeout: Duration,
    trace: Option<&mut Trace>,
) -> Result<SignOn, LinkError> {
    try_sign_on(port, s, timeout, trace)
        .await?
        .ok_or_else(|| no_identification(s, timeout))
}

/// [`sign_on`], with `None` when no identification came within `timeout`
/// (the line is then left at 300 baud 7E1).
pub async fn try_sign_on(
    port: &mut SerialStream,
    s: &SerialSettings,
    timeout: Duration,
    trace: Option<&mut Trace>,
) -> Result<Option<SignOn>, LinkError> {
    // Bytes left from the last HDLC session (a late frame) are no identification.
    let _ = port.clear(ClearBuffer::Input);
    configure(port, &s.path, 300, Parity::Even, 7, 1)?;
    let Ok(signed) = tokio::time::timeout(timeout, mode_e_sign_on(port, trace)).await else {
        return Ok(None);
    };
    let signed = signed?;
    configure(port, &s.path, signed.baud, Parity::None, 8, 1)?;
    Ok(Some(signed))
}

/// The error for a sign-on that got no identification.
pub fn no_identification(s: &SerialSettings, timeout: Duration) -> LinkError {
    LinkError::Connect(format!(
        "{}: mode E: no identification within {} (is the probe on the meter's optical port, and the meter waiting for a sign-on?)",
        s.path,
        humantime::format_duration(timeout)
    ))
}

/// Puts the line to the target's own rate at 8N1, as for an HDLC session
/// whose announced rate is not known (the session of a run that was stopped).
pub fn hdlc_line(port: &mut SerialStream, s: &SerialSettings) -> Result<(), LinkError> {
    configure(port, &s.path, s.baud, Parity::None, 8, 1)
}

/// What the meter said in a mode E sign-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOn {
    /// The identification line, without `/` and the line end (FLAG id, baud character, name).
    pub identification: String,
    /// The baud rate of the HDLC session the meter announced.
    pub baud: u32,
}

/// The layer name of sign-on traffic in traces.
pub const SIGN_ON_LAYER: &str = "iec62056-21";

/// The sign-on: returns the baud rate the meter announced.
pub async fn mode_e_handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    port: &mut S,
) -> Result<u32, LinkError> {
    Ok(mode_e_sign_on(port, None).await?.baud)
}

/// The sign-on, recorded in `trace` when given: request `/?!`, identification
/// `/XXXZ...`, acknowledgement `ACK 2 Z 2` (HDLC, binary mode).
pub async fn mode_e_sign_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    port: &mut S,
    mut trace: Option<&mut Trace>,
) -> Result<SignOn, LinkError> {
    const REQUEST: &[u8] = b"/?!\r\n";
    if let Some(t) = trace.as_deref_mut() {
        t.record(
            Direction::Sent,
            SIGN_ON_LAYER,
            REQUEST,
            "sign-on request /?! at 300 baud 7E1".into(),
        );
    }
    port.write_all(REQUEST).await?;
    port.flush().await?;
    let ident = loop {
        let line = read_line(port).await?;
        // Some probes echo what we send: skip our own request.
        if line == b"/?!" {
            continue;
        }
        break line;
    };
    let text = String::from_utf8_lossy(&ident).into_owned();
    let z = match (ident.first(), ident.get(4)) {
        (Some(b'/'), Some(z)) => *z,
        _ => {
            return Err(LinkError::Connect(format!(
                "mode E: not an identification message: {text:?}"
            )));
        }
    };
    let baud = baud_of(z).ok_or_else(|| {
        LinkError::Connect(format!(
            "mode E: unknown baud character {:?} in {text:?}",
            z as char
        ))
    })?;
    if let Some(t) = trace.as_deref_mut() {
        t.record(
            Direction::Received,
            SIGN_ON_LAYER,
            &ident,
            format!("identification {text}: HDLC offered at {baud} baud"),
        );
    }
    let ack = [0x06, b'2', z, b'2', b'\r', b'\n'];
    if let Some(t) = trace {
        t.record(
            Direction::Sent,
            SIGN_ON_LAYER,
            &ack,
            format!(
                "acknowledgement: protocol 2 (HDLC), baud character {}, mode 2 (binary); then {baud} baud 8N1",
                z as char
            ),
        );
    }
    port.write_all(&ack).await?;
    port.flush().await?;
    // Let the acknowledgement leave at 300 baud (6 characters of 10 bits) before switching.
    tokio::time::sleep(Duration::from_millis(250)).await;
    Ok(SignOn {
        identification: text.trim_start_matches('/').to_owned(),
        baud,
    })
}

async fn read_line<S: tokio::io::AsyncRead + Unpin>(port: &mut S) -> Result<Vec<u8>, LinkError> {
    let mut line = Vec::new();
    loop {
        let b = port.read_u8().await?;
        match b {
            b'\n' => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            _ if line.len() >= MAX_IDENT => {
                return Err(LinkError::Connect(
                    "mode E: identification line too long".into(),
                ));
            }
            _ => line.push(b & 0x7F),
        }
    }
}

/// What a meter waiting for a sign-on takes as one line: a message starts at
/// `/` (IEC 62056-21 start character), so whatever came before it (HDLC frames
/// from a client that did not sign on, noise) is dropped; of a line longer than
/// [`MAX_IDENT`], the end is kept.
async fn read_request_line<S: tokio::io::AsyncRead + Unpin>(
    port: &mut S,
) -> Result<Vec<u8>, LinkError> {
    let mut line = Vec::new();
    loop {
        let b = port.read_u8().await? & 0x7F;
        match b {
            b'\n' => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            b'/' => {
                line.clear();
                line.push(b);
            }
            _ => {
                if line.len() >= MAX_IDENT {
                    line.remove(0);
                }
                line.push(b);
            }
        }
    }
}

/// The meter side of the handshake, for the simulator on a serial port: waits
/// for `/?!`, answers the identification with baud character `z`, waits for the
/// acknowledgement. Returns the baud rate the client acknowledged. Anything
/// else on the line (HDLC frames from a client that did not sign on, noise) is
/// ignored, as a meter waiting for a sign-on does; a new request while the
/// acknowledgement is awaited is answered again.
pub async fn mode_e_answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    port: &mut S,
    ident: &str,
    z: u8,
) -> Result<u32, LinkError> {
    let answer = format!("/{ident}{}\r\n", z as char);
    let mut requested = false;
    loop {
        let line = read_request_line(port).await?;
        if line.ends_with(b"/?!") {
            port.write_all(answer.as_bytes()).await?;
            port.flush().await?;
            requested = true;
            continue;
        }
        if requested && let [.., 0x06, b'2', zz, b'2'] = line.as_slice() {
            return baud_of(*zz)
                .ok_or_else(|| LinkError::Connect("mode E: bad baud character in ACK".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handshake_over_an_in_memory_pair() {
        let (mut a, mut b) = tokio::io::duplex(256);
        let meter = tokio::spawn(async move { mode_e_answer(&mut b, "MMM5", b'5').await });
        let baud = mode_e_handshake(&mut a).await.unwrap();
        assert_eq!(baud, 9600);
        assert_eq!(meter.await.unwrap().unwrap(), 9600);
    }

    #[tokio::test]
    async fn rejects_a_bad_identification() {
        let (mut a, mut b) = tokio::io::duplex(256);
        tokio::spawn(async move {
            let mut buf = [0u8; 5];
            let _ = b.read_exact(&mut buf).await;
            let _ = b.write_all(b"garbage\r\n").await;
        });
        let e = mode_e_handshake(&mut a).await.unwrap_err();
        assert!(e.to_string().contains("not an identification"), "{e}");
    }

    #[tokio::test]
    async fn the_meter_finds_a_sign_on_after_hdlc_frames_and_noise() {
        // A client that did not know the meter was back at its sign-on sent SNRMs first.
        let snrm =
            hex::decode("7EA01F0223219321E0818012050180060180070400000001080400000001533B7E")
                .unwrap();
        let (mut a, mut b) = tokio::io::duplex(1024);
        let meter = tokio::spawn(async move { mode_e_answer(&mut b, "MMM", b'5').await });
        for _ in 0..3 {
            a.write_all(&snrm).await.unwrap();
        }
        a.write_all(&[0x55; 100]).await.unwrap();
        let client = tokio::time::timeout(Duration::from_secs(5), mode_e_handshake(&mut a));
        let baud = client.await.expect("the meter answers the sign-on");
        assert_eq!(baud.unwrap(), 9600);
        assert_eq!(meter.await.unwrap().unwrap(), 9600);
    }

    #[test]
    fn baud_characters() {
        assert_eq!(baud_of(b'0'), Some(300));
        assert_eq!(baud_of(b'6'), Some(19200));
        assert_eq!(baud_of(b'9'), None);
    }
}
