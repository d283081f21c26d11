//! The simulator's request handling: a `sim::Meter` with the default
//! configuration fed a sequence of arbitrary APDUs on one `sim::Connection`.
//!
//! Input: `selector | [quirks(8)] | records...`.
//! * selector bits 0-1: 0 = no association first; 1 = the public client 16
//!   associates (no security); 2 = the management client 1 associates with
//!   HLS-GMAC (authenticated and encrypted, Green Book keys); 3 = the same for
//!   client 2 (HLS-GMAC, security policy 0).
//! * bit 2: general-glo-ciphering instead of service-specific glo- APDUs.
//! * bit 3: stop after the AARE (HLS pass 3 not sent).
//! * bit 4: eight bytes of quirk flags follow (see `sim::Quirk::ALL`).
//! * bit 5: the client proposes a max receive PDU of 128 bytes (not 1024), so
//!   long GET results come in blocks (GetRequest::Next paths).
//! * a record: `ctl | len (1 byte, or 2 when ctl bit 3) | bytes`. ctl bit 0:
//!   protect the bytes through the association (when it is ciphered); bits 1-2:
//!   the client SAP it comes from (the associated client, 16, 1, 2).
//!
//! Every response must decode as an APDU, and the client side must take it
//! without panicking.
#![no_main]

use idis_harness::profile::{Ciphering, ClientProfile};
use idis_harness::session::association::{
    self, AareOutcome, Associated, AssociationRequest, HlsOutcome,
};
use idis_harness::sim::{Connection, Meter, MeterConfig, Quirk, Quirks};
use idis_harness::wire::apdu::Apdu;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_289_234;

struct Rig {
    meter: Meter,
    conn: Connection,
}

impl Rig {
    fn exchange(&mut self, sap: u16, request: &[u8]) -> Option<Vec<u8>> {
        let r = self.meter.handle(&mut self.conn, sap, request, NOW);
        self.meter.after_response(&mut self.conn);
        if let Some(resp) = &r
            && let Err(e) = Apdu::decode(resp)
        {
            panic!("the meter answered an undecodable APDU ({e}): {resp:02X?}");
        }
        r
    }

    /// Associates with the session layer's client; `None` when the meter refuses.
    fn associate(&mut self, c: &ClientProfile, skip_pass3: bool) -> Option<Associated> {
        let req = AssociationRequest::from_profile(c, b"0123456789ABCDEF".to_vec(), 1);
        let sap = req.client_sap;
        let (expect, aarq) = association::start(req).ok()?;
        let aare = self.exchange(sap, &aarq.encode())?;
        match expect.handle(&aare).ok()? {
            AareOutcome::Associated(a) => Some(a),
            AareOutcome::Refused(_) => None,
            AareOutcome::Pass3 { next, request } => {
                if skip_pass3 {
                    return Some(next.abandon());
                }
                let reply = self.exchange(sap, &request)?;
                match next.handle(&reply).ok()? {
                    HlsOutcome::Associated(a) => Some(a),
                    HlsOutcome::Refused(_, a) => Some(a),
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let mut quirks = Quirks::none();
    if selector & 0x10 != 0 {
        let Some((flags, tail)) = rest.split_first_chunk::<8>() else {
            return;
        };
        rest = tail;
        let bits = u64::from_le_bytes(*flags);
        for (i, q) in Quirk::ALL.iter().enumerate() {
            if i < 64 && bits >> i & 1 == 1 {
                quirks.insert(*q);
            }
        }
    }
    let mut rig = Rig {
        meter: Meter::new(MeterConfig::default(), quirks),
        conn: Connection::new(1),
    };
    let ciphering = if selector & 0x04 != 0 {
        Ciphering::General
    } else {
        Ciphering::ServiceSpecific
    };
    let skip_pass3 = selector & 0x08 != 0;
    let profile = match selector & 0x03 {
        0 => None,
        1 => Some(ClientProfile::public()),
        2 => Some(ClientProfile::management()),
        _ => {
            let mut c = ClientProfile::management();
            c.sap = 2;
            Some(c)
        }
    };
    let small_pdu = selector & 0x20 != 0;
    let mut assoc = profile.and_then(|mut c| {
        c.ciphering = ciphering;
        if small_pdu {
            c.max_pdu_size = 128;
        }
        rig.associate(&c, skip_pass3)
    });
    let own_sap = assoc.as_ref().map_or(16, |a| a.client_sap);

    while let Some((&ctl, tail)) = rest.split_first() {
        let (len, tail) = if ctl & 0x08 != 0 {
            let Some((l, t)) = tail.split_first_chunk::<2>() else {
                return;
            };
            (usize::from(u16::from_be_bytes(*l)), t)
        } else {
            let Some((&l, t)) = tail.split_first() else {
                return;
            };
            (usize::from(l), t)
        };
        let (bytes, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        let sap = match (ctl >> 1) & 0x03 {
            0 => own_sap,
            1 => 16,
            2 => 1,
            _ => 2,
        };
        let wrapped = match (&mut assoc, ctl & 0x01 != 0) {
            (Some(a), true) => match a.wrap(bytes) {
                Ok(w) => w,
                Err(_) => continue,
            },
            _ => bytes.to_vec(),
        };
        let Some(resp) = rig.exchange(sap, &wrapped) else {
            continue;
        };
        if let Some(a) = &mut assoc
            && let Ok(r) = a.unwrap(&resp)
        {
            let _ = r.apdu.to_string();
        }
    }
});
