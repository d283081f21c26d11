//! Serial ports (tokio-serial) and the IEC 62056-21 mode E handshake of optical
//! probes (dlms-facts.md 6.2): open at 300 baud 7E1, send `/?!<CR><LF>`, read
//! the identification `/XXXZ...<CR><LF>` (Z = baud character), acknowledge
//! with `ACK 2 Z 2 <CR><LF>` (protocol control 2 = HDLC, mode 2 = binary), then
//! switch to the announced baud rate at 8N1 and speak HDLC.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{
    DataBits, Parity as SerialParity, SerialPort, SerialPortBuilderExt, SerialStream, StopBits,
};

use crate::transport::link::{BoxStream, LinkError};
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

/// Opens a serial port; with `mode_e`, runs the IEC 62056-21 handshake first.
pub async fn open(s: &SerialSettings, timeout: Duration) -> Result<BoxStream, LinkError> {
    let start_baud = if s.mode_e { 300 } else { s.baud };
    let mut port = tokio_serial::new(&s.path, start_baud)
        .open_native_async()
        .map_err(|e| io(&s.path, "cannot open", e))?;
    if s.mode_e {
        configure(&mut port, &s.path, 300, Parity::Even, 7, 1)?;
        let baud = tokio::time::timeout(timeout, mode_e_handshake(&mut port))
            .await
            .map_err(|_| {
                LinkError::Connect(format!(
                    "{}: mode E: no identification within {}",
                    s.path,
                    humantime::format_duration(timeout)
                ))
            })??;
        configure(&mut port, &s.path, baud, Parity::None, 8, 1)?;
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
    Ok(Box::new(port))
}

/// The sign-on: returns the baud rate the meter announced.
pub async fn mode_e_handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    port: &mut S,
) -> Result<u32, LinkError> {
    port.write_all(b"/?!\r\n").await?;
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
    if ident.len() < 5 || ident[0] != b'/' {
        return Err(LinkError::Connect(format!(
            "mode E: not an identification message: {text:?}"
        )));
    }
    let z = ident[4];
    let baud = baud_of(z).ok_or_else(|| {
        LinkError::Connect(format!(
            "mode E: unknown baud character {:?} in {text:?}",
            z as char
        ))
    })?;
    port.write_all(&[0x06, b'2', z, b'2', b'\r', b'\n']).await?;
    port.flush().await?;
    // Let the acknowledgement leave at 300 baud (6 characters of 10 bits) before switching.
    tokio::time::sleep(Duration::from_millis(250)).await;
    Ok(baud)
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

/// The meter side of the handshake, for the simulator on a serial port: waits
/// for `/?!`, answers the identification with baud character `z`, waits for the
/// acknowledgement. Returns the baud rate the client acknowledged.
pub async fn mode_e_answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    port: &mut S,
    ident: &str,
    z: u8,
) -> Result<u32, LinkError> {
    loop {
        let line = read_line(port).await?;
        if line.ends_with(b"/?!") {
            break;
        }
    }
    port.write_all(format!("/{ident}{}\r\n", z as char).as_bytes())
        .await?;
    port.flush().await?;
    loop {
        let line = read_line(port).await?;
        if let [.., 0x06, b'2', zz, b'2'] = line.as_slice() {
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

    #[test]
    fn baud_characters() {
        assert_eq!(baud_of(b'0'), Some(300));
        assert_eq!(baud_of(b'6'), Some(19200));
        assert_eq!(baud_of(b'9'), None);
    }
}
