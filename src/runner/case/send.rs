//! The `send` step (hand-made bytes, protected APDUs with tampering, HDLC
//! frames and wrapper headers), and building the HDLC frames it sends.

use std::time::Duration;

use super::{CaseRun, StepError, StepResult, harness, parse_hex, tamper};
use crate::profile::{Ciphering, Protection};
use crate::runner::event::Direction;
use crate::runner::outcome::Observed;
use crate::suite::model::{self as m, Outcome, Step};
use crate::suite::vocab::{self, CounterSpec};
use crate::transport::link::{LinkKind, describe_apdu};
use crate::wire::hdlc::{Control, FrameRepr, LLC_REQUEST, RawFrame};
use crate::wire::wrapper::RawWrapper;

impl CaseRun<'_> {
    pub(super) async fn send(&mut self, step: &Step, s: &m::SendStep) -> StepResult {
        let sap = self.default_client;
        let wait = self.reply_wait(step);
        if let Some(apdu) = &s.apdu {
            let bytes = parse_hex(
                &apdu.resolve(&self.vars).map_err(StepError::Harness)?,
                "apdu",
            )?;
            let c = self.client(sap).await?;
            c.link
                .send_apdu(&bytes)
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            return self.judge(step, &observed, &[Outcome::Success], None);
        }
        if let Some(p) = &s.protected {
            let plain = parse_hex(
                &p.apdu.resolve(&self.vars).map_err(StepError::Harness)?,
                "protected.apdu",
            )?;
            let counter = match &p.counter {
                Some(c) => {
                    vocab::parse_counter(&c.resolve(&self.vars).map_err(StepError::Harness)?)
                        .map_err(StepError::Harness)?
                }
                None => CounterSpec::Next,
            };
            let c = self.client(sap).await?;
            let Some(ctx) = c.assoc.as_mut().and_then(|a| a.cipher.as_mut()) else {
                return harness("send protected: no ciphered association is open");
            };
            let ic = match counter {
                CounterSpec::Next => ctx
                    .take_ic()
                    .map_err(|e| StepError::Harness(e.to_string()))?,
                CounterSpec::Last(n) => ctx.next_ic.saturating_sub(1).saturating_sub(n),
                CounterSpec::Skip(n) => {
                    let v = ctx.next_ic.saturating_add(n);
                    ctx.next_ic = v.saturating_add(1);
                    v
                }
                CounterSpec::Value(v) => v,
            };
            let sc = match &p.security {
                Some(sec) => Protection::parse(sec)
                    .and_then(|x| x.control(ctx.suite))
                    .ok_or_else(|| {
                        StepError::Harness(format!("security `{sec}` cannot protect"))
                    })?,
                None => ctx.control(),
            };
            let ciphering = match &p.ciphering {
                Some(x) => Ciphering::parse(x)
                    .ok_or_else(|| StepError::Harness(format!("unknown ciphering `{x}`")))?,
                None => ctx.ciphering,
            };
            let mut wire = ctx
                .protect_with(&plain, sc, ic, ciphering)
                .map_err(|e| StepError::Harness(e.to_string()))?;
            if let Some(t) = &p.tamper {
                tamper(&mut wire, t, ciphering).map_err(StepError::Harness)?;
            }
            c.link.trace.record(
                Direction::Sent,
                "xdlms",
                &plain,
                format!(
                    "plain: {} (counter {ic}{})",
                    describe_apdu(&plain),
                    p.tamper
                        .as_ref()
                        .map(|t| format!(", tampered {t}"))
                        .unwrap_or_default()
                ),
            );
            c.last_protected = Some(wire.clone());
            c.link
                .send_apdu(&wire)
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            let next = self.next_ic_of(sap);
            return self.judge(step, &observed, &[Outcome::Success], next);
        }
        if let Some(h) = &s.hdlc {
            let bytes = self.build_hdlc(sap, h).await?;
            let c = self.ensure_link(sap, false).await?;
            if c.link.kind() != LinkKind::Hdlc {
                return harness("send hdlc: the link is not HDLC");
            }
            let desc = FrameRepr::decode(&bytes)
                .map(|f| f.to_string())
                .unwrap_or_else(|e| format!("hand-made frame ({e})"));
            c.link
                .send_raw(&bytes, "hdlc", desc)
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            return self.judge(step, &observed, &[Outcome::Success], None);
        }
        if let Some(w) = &s.wrapper {
            let payload = match &w.payload {
                Some(p) => parse_hex(
                    &p.resolve(&self.vars).map_err(StepError::Harness)?,
                    "wrapper.payload",
                )?,
                None => vec![],
            };
            let c = self.client(sap).await?;
            if !matches!(c.link.kind(), LinkKind::Wrapper | LinkKind::Udp) {
                return harness("send wrapper: the link is not a wrapper link");
            }
            let settings = c.link.settings().clone();
            let raw = RawWrapper {
                version: w.version.unwrap_or(1),
                source: w.source.unwrap_or(settings.client),
                destination: w.destination.unwrap_or(settings.server_wport),
                length: w.length,
                payload,
            };
            let one = raw.encode();
            let repeat = w.repeat.unwrap_or(1).max(1) as usize;
            let bytes: Vec<u8> = one
                .iter()
                .copied()
                .cycle()
                .take(one.len() * repeat)
                .collect();
            let desc = format!(
                "wrapper v{} {}->{} length {} x{repeat}",
                raw.version,
                raw.source,
                raw.destination,
                raw.length.map_or("(correct)".into(), |l| l.to_string())
            );
            match w.split {
                Some(n) if n > 1 => {
                    c.link
                        .send_raw_split(&bytes, n as usize, Duration::from_millis(30))
                        .await
                }
                _ => c.link.send_raw(&bytes, "wrapper", desc).await,
            }
            .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = if repeat > 1 {
                let mut got = 0;
                let mut last = Observed::Silence;
                for _ in 0..repeat {
                    last = self.observe_reply(sap, wait).await?;
                    if matches!(last, Observed::Silence | Observed::Disconnect) {
                        break;
                    }
                    got += 1;
                }
                if got == repeat {
                    Observed::Replies(got)
                } else {
                    last
                }
            } else {
                self.observe_reply(sap, wait).await?
            };
            return self.judge(step, &observed, &[Outcome::Success], None);
        }
        if let Some(b) = &s.bytes {
            let bytes = parse_hex(&b.resolve(&self.vars).map_err(StepError::Harness)?, "bytes")?;
            let c = self.client(sap).await?;
            c.link
                .send_raw(&bytes, "raw", format!("{} raw bytes", bytes.len()))
                .await
                .map_err(|e| StepError::Harness(e.to_string()))?;
            let observed = self.observe_reply(sap, wait).await?;
            return self.judge(step, &observed, &[Outcome::Silence], None);
        }
        harness("send: nothing to send")
    }

    pub(super) async fn build_hdlc(
        &mut self,
        sap: u16,
        h: &m::HdlcFrameSpec,
    ) -> Result<Vec<u8>, StepError> {
        let vars = self.vars.clone();
        let c = self.ensure_link(sap, false).await?;
        let settings = c.link.settings().clone();
        let (vs, vr) = c.link.hdlc_client().map(|x| x.sequence()).unwrap_or((0, 0));
        let ns = h.send_seq.unwrap_or(vs) & 7;
        let nr = h.recv_seq.unwrap_or(vr) & 7;
        let kind = h.control.as_deref().unwrap_or("i");
        let control = match kind {
            "snrm" => Control::Snrm { poll_final: true }.to_byte(),
            "disc" => Control::Disc { poll_final: true }.to_byte(),
            "ui" => Control::Ui { poll_final: true }.to_byte(),
            "rr" => Control::Rr {
                recv_seq: nr,
                poll_final: true,
            }
            .to_byte(),
            "rnr" => Control::Rnr {
                recv_seq: nr,
                poll_final: true,
            }
            .to_byte(),
            "i" => Control::I {
                send_seq: ns,
                recv_seq: nr,
                poll_final: true,
            }
            .to_byte(),
            hexbyte => {
                let b = parse_hex(hexbyte, "hdlc.control")?;
                match b.as_slice() {
                    [x] => *x,
                    _ => return harness("hdlc.control: one byte in hex, or snrm/disc/ui/rr/rnr/i"),
                }
            }
        };
        let mut info = match &h.info {
            Some(t) => parse_hex(&t.resolve(&vars).map_err(StepError::Harness)?, "hdlc.info")?,
            None => vec![],
        };
        if kind == "i" && h.llc != Some(false) {
            let mut with = LLC_REQUEST.to_vec();
            with.extend_from_slice(&info);
            info = with;
        }
        let mut dest = Vec::new();
        settings.server_address.encode(&mut dest);
        let mut src = Vec::new();
        crate::wire::hdlc::Address::client(settings.client.min(0x7F) as u8).encode(&mut src);
        let raw = RawFrame {
            opening_flag: !h.no_opening_flag,
            closing_flag: !h.no_closing_flag,
            format_type: h.format_type.unwrap_or(0xA),
            segmented: h.segmented.unwrap_or(false),
            length: h.length,
            dest: match &h.dest {
                Some(d) => parse_hex(&d.resolve(&vars).map_err(StepError::Harness)?, "hdlc.dest")?,
                None => dest,
            },
            src: match &h.src {
                Some(d) => parse_hex(&d.resolve(&vars).map_err(StepError::Harness)?, "hdlc.src")?,
                None => src,
            },
            control,
            info,
            hcs: None,
            fcs: None,
            omit_hcs: false,
        };
        let mut bytes = raw.encode();
        let prefix = match &h.prefix {
            Some(p) => parse_hex(p, "hdlc.prefix")?,
            None => vec![],
        };
        // Checksums are patched on the encoded bytes, in wire order.
        let has_info = !raw.info.is_empty();
        let end = bytes.len() - usize::from(raw.closing_flag);
        let start = usize::from(raw.opening_flag);
        let hcs_at = start + 2 + raw.dest.len() + raw.src.len() + 1;
        let patch =
            |bytes: &mut Vec<u8>, at: usize, spec: &str, what: &str| -> Result<(), StepError> {
                let Some(slot) = bytes.get_mut(at..at + 2) else {
                    return harness(format!("{what}: the frame is too short to hold it"));
                };
                if spec == vocab::BAD_CHECKSUM {
                    slot[0] ^= 0xFF;
                    slot[1] ^= 0x5A;
                } else {
                    let v = vocab::parse_hex(spec)
                        .map_err(|e| StepError::Harness(format!("{what}: {e}")))?;
                    if v.len() != 2 {
                        return harness(format!("{what}: two bytes in hex, or `bad`"));
                    }
                    slot.copy_from_slice(&v);
                }
                Ok(())
            };
        if let Some(hcs) = &h.hcs {
            if !has_info {
                return harness("hdlc.hcs: a frame without information field has no HCS");
            }
            patch(&mut bytes, hcs_at, hcs, "hdlc.hcs")?;
        }
        if let Some(fcs) = &h.fcs {
            patch(&mut bytes, end.saturating_sub(2), fcs, "hdlc.fcs")?;
        }
        if !prefix.is_empty() {
            bytes.splice(0..0, prefix);
        }
        // A correct hand-made I-frame moves the link's send sequence on.
        if kind == "i"
            && h.send_seq.is_none()
            && h.recv_seq.is_none()
            && h.hcs.is_none()
            && h.fcs.is_none()
            && h.length.is_none()
            && h.dest.is_none()
        {
            let c = self.client(sap).await?;
            if let Some(x) = c.link.hdlc_client_mut() {
                x.note_raw_i_frame(ns);
            }
        }
        Ok(bytes)
    }
}
