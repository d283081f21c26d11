//! HDLC data link (IEC 62056-46; dlms-facts.md 6.1), both sides, sans-IO in the
//! quinn-proto manner: feed received bytes with `handle_bytes` and the clock
//! with `handle_timeout`; take frames to send with `poll_transmit`, events with
//! `poll_event`, and the next deadline with `poll_timeout`.
//!
//! Covered: SNRM/UA with parameter negotiation, I-frames with N(S)/N(R),
//! segmentation both ways (RR polling for the next segment), the window,
//! retransmission on timeout, DISC/UA/DM, FRMR, the inactivity timeout (server)
//! and the LLC header.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::hdlc::{
    Address, Control, DeframeEvent, Deframer, FrameRepr, HdlcError, LLC_REQUEST, LLC_RESPONSE,
    LinkParams, crc16,
};

/// Largest information field either side may negotiate (IEC 62056-46: 2030).
pub const MAX_INFO_LIMIT: u16 = 2030;

fn inc(n: u8) -> u8 {
    (n + 1) & 0x07
}

/// Splits `data` into information fields of at most `max` bytes.
fn segment(data: &[u8], max: usize) -> VecDeque<Vec<u8>> {
    let max = max.max(1);
    let mut out: VecDeque<Vec<u8>> = data.chunks(max).map(|c| c.to_vec()).collect();
    if out.is_empty() {
        out.push_back(Vec::new());
    }
    out
}

// ---------------------------------------------------------------------------
// Client

/// Settings of the client side.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client: Address,
    pub server: Address,
    /// Parameters proposed in the SNRM; `None` sends an SNRM without an information field.
    pub proposal: Option<LinkParams>,
    /// How long to wait for a reply before retransmitting.
    pub response_timeout: Duration,
    /// Retransmissions before giving up.
    pub retries: u8,
}

/// What the client link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Every frame received, before it is processed (for the traffic trace).
    FrameReceived(FrameRepr),
    /// Bytes that formed no valid frame (bad HCS/FCS, bad length, ...).
    InvalidFrame { bytes: Vec<u8>, error: HdlcError },
    /// UA to our SNRM: the link is up with these parameters (as seen from us: tx = what we may send).
    Connected(LinkParams),
    /// DM to our SNRM.
    ConnectRefused,
    /// UA or DM to our DISC, or a DM/DISC from the server while connected.
    Disconnected { by_peer: bool },
    /// A complete APDU (LLC header removed).
    Apdu(Vec<u8>),
    /// The server answered FRMR.
    FrameRejected(Vec<u8>),
    /// The server broke the protocol (wrong N(S), missing LLC, unexpected frame).
    Violation(String),
    /// A frame that is no answer to what is outstanding and was ignored (a repeat
    /// of the last I-frame, as after a retransmission that crossed the reply).
    Discarded(String),
    /// No reply after all retransmissions.
    Timeout(&'static str),
}

impl std::fmt::Display for ClientEvent {
    /// In the words of IEC 62056-46, for messages (never Rust's debug form).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientEvent::FrameReceived(fr) => write!(f, "received {fr}"),
            ClientEvent::InvalidFrame { error, .. } => write!(f, "an invalid frame: {error}"),
            ClientEvent::Connected(p) => write!(
                f,
                "connected (max info tx {} rx {}, window tx {} rx {})",
                p.max_info_tx, p.max_info_rx, p.window_tx, p.window_rx
            ),
            ClientEvent::ConnectRefused => f.write_str("DM to the SNRM (connection refused)"),
            ClientEvent::Disconnected { by_peer: true } => {
                f.write_str("the device disconnected (DM or DISC)")
            }
            ClientEvent::Disconnected { by_peer: false } => f.write_str("disconnected"),
            ClientEvent::Apdu(a) => write!(f, "an APDU of {} byte(s)", a.len()),
            ClientEvent::FrameRejected(info) if info.is_empty() => f.write_str("FRMR"),
            ClientEvent::FrameRejected(info) => {
                write!(f, "FRMR (information {})", hex::encode_upper(info))
            }
            ClientEvent::Violation(v) => write!(f, "HDLC violation by the device: {v}"),
            ClientEvent::Discarded(d) => write!(f, "ignored a {d}"),
            ClientEvent::Timeout(what) => f.write_str(what),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Disconnected,
    Connecting,
    Connected,
    Disconnecting,
}

/// The client (primary station) side of an HDLC link.
#[derive(Debug)]
pub struct HdlcClient {
    cfg: ClientConfig,
    state: ClientState,
    params: LinkParams,
    deframer: Deframer,
    vs: u8,
    vr: u8,
    /// Information fields still to send for the current APDU.
    pending: VecDeque<Vec<u8>>,
    /// The last command frame sent and waiting for a reply, with when and how often.
    outstanding: Option<(FrameRepr, Instant, u8)>,
    reassembly: Vec<u8>,
    /// An I-frame was received since the SNRM (so V(R) - 1 names a real frame).
    received_i: bool,
    /// A hand-made frame with the poll bit went out (bypassing this state
    /// machine): the server may answer it once.
    raw_poll: bool,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
}

impl HdlcClient {
    pub fn new(cfg: ClientConfig) -> Self {
        HdlcClient {
            cfg,
            state: ClientState::Disconnected,
            params: LinkParams::default(),
            deframer: Deframer::new(),
            vs: 0,
            vr: 0,
            pending: VecDeque::new(),
            outstanding: None,
            reassembly: Vec::new(),
            received_i: false,
            raw_poll: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }
    pub fn is_connected(&self) -> bool {
        self.state == ClientState::Connected
    }
    /// Negotiated parameters, as seen from the client (tx = toward the server).
    pub fn params(&self) -> LinkParams {
        self.params
    }
    /// The next N(S) and N(R) the client would use (for hand-made frames).
    pub fn sequence(&self) -> (u8, u8) {
        (self.vs, self.vr)
    }
    /// Garbage bytes dropped by the deframer so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.deframer.dropped_bytes()
    }
    /// Records that an I-frame with N(S) = `send_seq` was sent by hand (bypassing
    /// this state machine), so the next frame uses the following number.
    pub fn note_raw_i_frame(&mut self, send_seq: u8) {
        if send_seq == self.vs {
            self.vs = inc(self.vs);
        }
    }
    /// Records that a frame with the poll bit was sent by hand (bypassing this
    /// state machine): the server's answer to it is polled for, not a
    /// violation of the window.
    pub fn note_raw_poll(&mut self) {
        self.raw_poll = true;
    }
    /// Bytes the deframer holds while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.deframer.buffered()
    }
    /// The next event, left in the queue.
    pub fn peek_event(&self) -> Option<&ClientEvent> {
        self.events.front()
    }
    /// Gives up the exchange under way (the caller stopped waiting): nothing is
    /// outstanding or pending any more, and a half-open or half-closed link is
    /// taken as down. Sequence numbers are kept.
    pub fn abandon(&mut self) {
        self.outstanding = None;
        self.pending.clear();
        if matches!(
            self.state,
            ClientState::Connecting | ClientState::Disconnecting
        ) {
            self.state = ClientState::Disconnected;
        }
    }
    /// Is a request or reply still under way?
    pub fn busy(&self) -> bool {
        self.outstanding.is_some() || !self.pending.is_empty()
    }

    fn frame(&self, control: Control, info: Vec<u8>, segmented: bool) -> FrameRepr {
        FrameRepr {
            segmented,
            dest: self.cfg.server,
            src: self.cfg.client,
            control,
            info,
        }
    }

    fn send_command(&mut self, f: FrameRepr, now: Instant) {
        self.transmit.push_back(f.encode());
        self.outstanding = Some((f, now, 0));
    }

    /// Sends SNRM.
    pub fn connect(&mut self, now: Instant) {
        let info = self.cfg.proposal.map(|p| p.encode()).unwrap_or_default();
        let f = self.frame(Control::Snrm { poll_final: true }, info, false);
        self.state = ClientState::Connecting;
        self.vs = 0;
        self.vr = 0;
        self.received_i = false;
        self.raw_poll = false;
        self.pending.clear();
        self.reassembly.clear();
        self.send_command(f, now);
    }

    /// Sends DISC.
    pub fn disconnect(&mut self, now: Instant) {
        let f = self.frame(Control::Disc { poll_final: true }, vec![], false);
        self.state = ClientState::Disconnecting;
        self.pending.clear();
        self.send_command(f, now);
    }

    /// Queues an APDU: adds the LLC header and segments it to the negotiated size.
    pub fn send_apdu(&mut self, apdu: &[u8], now: Instant) -> Result<(), &'static str> {
        if self.state != ClientState::Connected {
            return Err("the HDLC link is not connected (no UA to an SNRM yet)");
        }
        if self.busy() {
            return Err("a request is still under way on the HDLC link");
        }
        let mut info = LLC_REQUEST.to_vec();
        info.extend_from_slice(apdu);
        self.pending = segment(&info, self.params.max_info_tx as usize);
        self.reassembly.clear();
        self.send_next_segment(now);
        Ok(())
    }

    fn send_next_segment(&mut self, now: Instant) {
        if let Some(info) = self.pending.pop_front() {
            let segmented = !self.pending.is_empty();
            let f = self.frame(
                Control::I {
                    send_seq: self.vs,
                    recv_seq: self.vr,
                    poll_final: true,
                },
                info,
                segmented,
            );
            self.vs = inc(self.vs);
            self.send_command(f, now);
        }
    }

    /// Feeds received bytes.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        self.deframer.push(bytes);
        while let Some(ev) = self.deframer.next_event() {
            match ev {
                DeframeEvent::Frame(f) => self.handle_frame(f, now),
                DeframeEvent::Invalid { bytes, error } => self
                    .events
                    .push_back(ClientEvent::InvalidFrame { bytes, error }),
            }
        }
    }

    fn handle_frame(&mut self, f: FrameRepr, now: Instant) {
        // Frames for another client, or from another server, are not ours.
        let ours = f.dest == self.cfg.client && f.src == self.cfg.server;
        self.events.push_back(ClientEvent::FrameReceived(f.clone()));
        if !ours {
            self.events.push_back(ClientEvent::Violation(format!(
                "frame addressed {} -> {}, expected {} -> {}",
                f.src, f.dest, self.cfg.server, self.cfg.client
            )));
            return;
        }
        // One answer per poll: a hand-made poll is used up by this frame.
        let polled_by_hand = std::mem::take(&mut self.raw_poll);
        match (self.state, f.control) {
            (ClientState::Connecting, Control::Ua { .. }) => {
                self.outstanding = None;
                match LinkParams::decode(&f.info) {
                    Ok(p) => {
                        // UA parameters are the server's view: its tx is our rx.
                        self.params = LinkParams {
                            max_info_tx: p.max_info_rx.min(MAX_INFO_LIMIT),
                            max_info_rx: p.max_info_tx.min(MAX_INFO_LIMIT),
                            window_tx: p.window_rx,
                            window_rx: p.window_tx,
                        };
                        self.state = ClientState::Connected;
                        self.events.push_back(ClientEvent::Connected(self.params));
                    }
                    Err(e) => {
                        self.state = ClientState::Disconnected;
                        self.events
                            .push_back(ClientEvent::Violation(format!("UA parameters: {e}")));
                    }
                }
            }
            (ClientState::Connecting, Control::Dm { .. }) => {
                self.outstanding = None;
                self.state = ClientState::Disconnected;
                self.events.push_back(ClientEvent::ConnectRefused);
            }
            (ClientState::Disconnecting, Control::Ua { .. } | Control::Dm { .. }) => {
                self.outstanding = None;
                self.state = ClientState::Disconnected;
                self.events
                    .push_back(ClientEvent::Disconnected { by_peer: false });
            }
            (_, Control::Frmr { .. }) => {
                self.outstanding = None;
                self.pending.clear();
                self.events.push_back(ClientEvent::FrameRejected(f.info));
            }
            (ClientState::Connected, Control::Dm { .. } | Control::Disc { .. }) => {
                self.outstanding = None;
                self.pending.clear();
                self.state = ClientState::Disconnected;
                self.events
                    .push_back(ClientEvent::Disconnected { by_peer: true });
            }
            (ClientState::Connected, Control::Rr { recv_seq, .. }) => {
                // The server acknowledges a segment and asks for the next.
                let last_sent = (self.vs + 7) & 7;
                if recv_seq == last_sent
                    && matches!(
                        self.outstanding,
                        Some((FrameRepr { control: Control::I { send_seq, .. }, .. }, _, _))
                            if send_seq == last_sent
                    )
                {
                    // Our last I-frame is not acknowledged (a stale RR, or the server
                    // missed it): keep it outstanding, to be sent again on timeout.
                    self.events.push_back(ClientEvent::Discarded(format!(
                        "RR with N(R)={recv_seq} does not acknowledge I-frame N(S)={last_sent}"
                    )));
                    return;
                }
                if recv_seq != self.vs {
                    self.events.push_back(ClientEvent::Violation(format!(
                        "RR with N(R)={recv_seq}, expected {}",
                        self.vs
                    )));
                }
                self.outstanding = None;
                if !self.pending.is_empty() {
                    self.send_next_segment(now);
                }
            }
            (
                ClientState::Connected,
                Control::I {
                    send_seq, recv_seq, ..
                },
            ) => {
                // An I-frame out of sequence answers nothing: what is outstanding stays so.
                if self.received_i && send_seq == (self.vr + 7) & 7 {
                    self.events.push_back(ClientEvent::Discarded(format!(
                        "repeated I-frame N(S)={send_seq} (already received)"
                    )));
                    return;
                }
                if f.info.len() > self.params.max_info_rx as usize {
                    self.events.push_back(ClientEvent::Violation(format!(
                        "I-frame information field of {} bytes exceeds the negotiated maximum of {}",
                        f.info.len(),
                        self.params.max_info_rx
                    )));
                }
                if self.outstanding.is_none() && !polled_by_hand {
                    self.events.push_back(ClientEvent::Violation(
                        "I-frame sent without being polled (the window of 1 is exceeded)".into(),
                    ));
                }
                if send_seq != self.vr {
                    self.events.push_back(ClientEvent::Violation(format!(
                        "I-frame with N(S)={send_seq}, expected {}",
                        self.vr
                    )));
                    return;
                }
                let answered_i_frame = polled_by_hand
                    || matches!(
                        self.outstanding,
                        Some((
                            FrameRepr {
                                control: Control::I { .. },
                                ..
                            },
                            _,
                            _
                        ))
                    );
                self.outstanding = None;
                if recv_seq != self.vs {
                    let last_sent = (self.vs + 7) & 7;
                    let why = if recv_seq == last_sent && answered_i_frame {
                        // ISO/IEC 13239: N(R) names the next frame expected, so
                        // this one says our I-frame was not received.
                        format!(
                            "I-frame with N(R)={recv_seq} answers our I-frame N(S)={last_sent} \
                             without acknowledging it (expected N(R)={})",
                            self.vs
                        )
                    } else {
                        format!("I-frame with N(R)={recv_seq}, expected {}", self.vs)
                    };
                    self.events.push_back(ClientEvent::Violation(why));
                }
                self.vr = inc(self.vr);
                self.received_i = true;
                self.pending.clear();
                self.reassembly.extend_from_slice(&f.info);
                if f.segmented {
                    // Poll for the next segment.
                    let rr = self.frame(
                        Control::Rr {
                            recv_seq: self.vr,
                            poll_final: true,
                        },
                        vec![],
                        false,
                    );
                    self.send_command(rr, now);
                } else {
                    let data = std::mem::take(&mut self.reassembly);
                    match data.strip_prefix(&LLC_RESPONSE[..]) {
                        Some(apdu) => self.events.push_back(ClientEvent::Apdu(apdu.to_vec())),
                        None => self.events.push_back(ClientEvent::Violation(format!(
                            "response without the LLC header E6 E7 00 (starts {})",
                            hex::encode_upper(&data[..data.len().min(3)])
                        ))),
                    }
                }
            }
            (state, control) => {
                self.events.push_back(ClientEvent::Violation(format!(
                    "unexpected {control} while {state:?}"
                )));
            }
        }
    }

    /// The next time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding
            .as_ref()
            .map(|(_, at, _)| *at + self.cfg.response_timeout)
    }

    /// Retransmits the outstanding frame, or gives up after the configured retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((f, at, tries)) = self.outstanding.take() else {
            return;
        };
        if now < at + self.cfg.response_timeout {
            self.outstanding = Some((f, at, tries));
            return;
        }
        if tries >= self.cfg.retries {
            let what = match f.control {
                Control::Snrm { .. } => "no reply to SNRM",
                Control::Disc { .. } => "no reply to DISC",
                Control::Rr { .. } => "no next segment after RR",
                _ => "no reply to I-frame",
            };
            if matches!(f.control, Control::Snrm { .. } | Control::Disc { .. }) {
                self.state = ClientState::Disconnected;
            }
            self.pending.clear();
            self.events.push_back(ClientEvent::Timeout(what));
            return;
        }
        // Resend the same frame: the server answers a repeated N(S) by
        // repeating its last reply (see `HdlcServer`).
        self.transmit.push_back(f.encode());
        self.outstanding = Some((f, now, tries + 1));
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

// ---------------------------------------------------------------------------
// Server

/// Deliberate faults of the server link (simulator quirks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLinkFaults {
    /// Process frames whose HCS or FCS is wrong instead of discarding them.
    pub accept_bad_checksums: bool,
    /// Answer frames addressed to another server address.
    pub answer_any_address: bool,
    /// Answer frames whose source address has more than one byte.
    pub answer_long_source: bool,
    /// Ignore the client's SNRM parameters and use its own maxima.
    pub ignore_snrm_parameters: bool,
    /// Accept I-frames longer than the negotiated maximum.
    pub accept_oversized_frames: bool,
    /// Do not check N(S) of received I-frames.
    pub ignore_sequence_numbers: bool,
    /// Answer an I-frame received before SNRM instead of DM.
    pub answer_in_ndm: bool,
    /// Send long responses in one frame, ignoring the negotiated maximum.
    pub no_segmentation: bool,
    /// Answer FRMR to these malformed frames instead of discarding them silently.
    pub answer_malformed: MalformedAnswers,
    /// Stay silent on an unknown control field instead of answering FRMR.
    pub ignore_unknown_commands: bool,
}

/// Which malformed frames a faulty server answers FRMR (each a fault of its own:
/// a real meter checks them in different places).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MalformedAnswers {
    /// Stray bytes, or a frame without its opening flag (HDLC_FRAME_N1).
    pub stray_bytes: bool,
    /// A frame too short to hold its header (HDLC_FRAME_N2).
    pub too_short: bool,
    /// A frame format type other than 1010 (HDLC_FRAME_N3).
    pub format_type: bool,
    /// A length field that does not match the frame (HDLC_FRAME_N4).
    pub length: bool,
    /// An address of 3 or more than 4 bytes (HDLC_ADDRESS_N7).
    pub address: bool,
}

impl MalformedAnswers {
    /// Whether a frame rejected with `error` is answered.
    fn answers(&self, error: &HdlcError) -> bool {
        match error {
            HdlcError::MissingFlag => self.stray_bytes,
            HdlcError::TooShort { .. } => self.too_short,
            // After a shared flag, stray bytes stand where the format field
            // should: a first byte with no format type at all is one of them.
            HdlcError::BadFormatType(0) => self.stray_bytes,
            HdlcError::BadFormatType(_) => self.format_type,
            HdlcError::LengthMismatch { .. } => self.length,
            HdlcError::BadAddress { .. } => self.address,
            _ => false,
        }
    }
}

/// Settings of the server side.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our address (upper = logical device, lower = physical).
    pub address: Address,
    /// What we support: max info both ways and window.
    pub limits: LinkParams,
    /// Drop to disconnected after this long without a frame.
    pub inactivity_timeout: Option<Duration>,
    /// Accept our upper/lower address in the other length too (2 or 4 bytes),
    /// and answer from the length the client used.
    pub any_address_form: bool,
    pub faults: ServerLinkFaults,
}

/// What the server link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A client connected (SNRM answered with UA).
    Connected { client: Address, params: LinkParams },
    /// The link went down (DISC, or the inactivity timeout).
    Disconnected {
        client: Address,
        reason: &'static str,
    },
    /// A DISC while no link was up (answered DM).
    DiscWhileDisconnected { client: Address },
    /// A complete request APDU (LLC removed).
    Apdu { client: Address, apdu: Vec<u8> },
    /// A frame was discarded, and why (bad checksum, not for us, ...).
    Discarded(String),
}

/// The server (secondary station) side of an HDLC link, for one physical connection.
#[derive(Debug)]
pub struct HdlcServer {
    cfg: ServerConfig,
    /// The source address of our frames: our address, in the length the
    /// client last used for it.
    answer_as: Address,
    client: Option<Address>,
    params: LinkParams,
    deframer: Deframer,
    vs: u8,
    vr: u8,
    reassembly: Vec<u8>,
    /// Response segments not yet sent.
    pending: VecDeque<Vec<u8>>,
    /// The last frame we sent, repeated if the client polls again.
    last_sent: Option<Vec<u8>>,
    last_activity: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
}

impl HdlcServer {
    pub fn new(cfg: ServerConfig) -> Self {
        HdlcServer {
            answer_as: cfg.address,
            cfg,
            client: None,
            params: LinkParams::default(),
            deframer: Deframer::new(),
            vs: 0,
            vr: 0,
            reassembly: Vec::new(),
            pending: VecDeque::new(),
            last_sent: None,
            last_activity: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }
    pub fn params(&self) -> LinkParams {
        self.params
    }
    pub fn dropped_bytes(&self) -> u64 {
        self.deframer.dropped_bytes()
    }

    fn reply(&mut self, to: Address, control: Control, info: Vec<u8>, segmented: bool) {
        let f = FrameRepr {
            segmented,
            dest: to,
            src: self.answer_as,
            control,
            info,
        };
        let bytes = f.encode();
        self.last_sent = Some(bytes.clone());
        self.transmit.push_back(bytes);
    }

    /// Feeds received bytes.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        let dropped_before = self.deframer.dropped_bytes();
        self.deframer.push(bytes);
        while let Some(ev) = self.deframer.next_event() {
            match ev {
                DeframeEvent::Frame(f) => self.handle_frame(f, now),
                DeframeEvent::Invalid { bytes, error } => {
                    let checksum = matches!(
                        error,
                        HdlcError::HcsMismatch { .. } | HdlcError::FcsMismatch { .. }
                    );
                    if checksum
                        && self.cfg.faults.accept_bad_checksums
                        && let Some(f) =
                            repair_checksums(&bytes).and_then(|b| FrameRepr::decode(&b).ok())
                    {
                        self.handle_frame(f, now);
                        continue;
                    }
                    if self.cfg.faults.answer_malformed.answers(&error) {
                        self.frmr_to_any(0x01);
                        continue;
                    }
                    // IEC 62056-46 / HDLC_FRAME_N7, N8: discarded silently.
                    self.events
                        .push_back(ServerEvent::Discarded(format!("{error}")));
                }
            }
        }
        if self.cfg.faults.answer_malformed.stray_bytes
            && self.deframer.dropped_bytes() > dropped_before
        {
            self.frmr_to_any(0x01);
        }
    }

    /// FRMR to the connected client, or to the public client when none is.
    fn frmr_to_any(&mut self, reason: u8) {
        let to = self.client.unwrap_or(Address::client(0x10));
        self.reply(
            to,
            Control::Frmr { poll_final: true },
            vec![0, 0, reason],
            false,
        );
    }

    fn handle_frame(&mut self, f: FrameRepr, now: Instant) {
        let ours = f.dest == self.cfg.address
            || (self.cfg.any_address_form
                && f.dest.encoded_len() > 1
                && f.dest.upper() == self.cfg.address.upper()
                && f.dest.lower() == self.cfg.address.lower());
        let for_us = ours
            || (f.dest.upper() == 0x7F || f.dest.upper() == 0x3FFF) // all-station
            || self.cfg.faults.answer_any_address;
        if !for_us {
            self.events.push_back(ServerEvent::Discarded(format!(
                "frame for {} (we are {})",
                f.dest, self.cfg.address
            )));
            return;
        }
        if ours {
            self.answer_as = f.dest;
        }
        // The source must be a one-byte client address.
        if !matches!(f.src, Address::One(_)) && !self.cfg.faults.answer_long_source {
            self.events.push_back(ServerEvent::Discarded(format!(
                "source address {} is not a one-byte client address",
                f.src
            )));
            return;
        }
        if let Some(c) = self.client
            && c != f.src
            && !matches!(f.control, Control::Snrm { .. })
        {
            self.events.push_back(ServerEvent::Discarded(format!(
                "frame from client {} while connected to {c}",
                f.src
            )));
            return;
        }
        self.last_activity = Some(now);
        let client = f.src;
        match f.control {
            Control::Snrm { .. } => {
                let proposed = match LinkParams::decode(&f.info) {
                    Ok(p) => p,
                    Err(_) => {
                        self.reply(
                            client,
                            Control::Frmr { poll_final: true },
                            frmr_info(&f, 0x01),
                            false,
                        );
                        return;
                    }
                };
                let lim = self.cfg.limits;
                // Proposed values are the client's view: its tx is our rx.
                let ours = if self.cfg.faults.ignore_snrm_parameters {
                    lim
                } else {
                    LinkParams {
                        max_info_tx: proposed.max_info_rx.min(lim.max_info_tx),
                        max_info_rx: proposed.max_info_tx.min(lim.max_info_rx),
                        window_tx: proposed.window_rx.min(lim.window_tx).max(1),
                        window_rx: proposed.window_tx.min(lim.window_rx).max(1),
                    }
                };
                self.params = ours;
                self.client = Some(client);
                self.vs = 0;
                self.vr = 0;
                self.reassembly.clear();
                self.pending.clear();
                self.reply(
                    client,
                    Control::Ua { poll_final: true },
                    ours.encode(),
                    false,
                );
                self.events.push_back(ServerEvent::Connected {
                    client,
                    params: ours,
                });
            }
            Control::Disc { .. } => {
                if self.client.take().is_some() {
                    self.reply(client, Control::Ua { poll_final: true }, vec![], false);
                    self.events.push_back(ServerEvent::Disconnected {
                        client,
                        reason: "DISC",
                    });
                } else {
                    self.reply(client, Control::Dm { poll_final: true }, vec![], false);
                    self.events
                        .push_back(ServerEvent::DiscWhileDisconnected { client });
                }
            }
            _ if self.client.is_none() && !self.cfg.faults.answer_in_ndm => {
                // HDLC_NDMOP_N1: in the disconnected mode, answer DM to anything but SNRM/DISC/UI.
                if !matches!(f.control, Control::Ui { .. }) && f.control.poll_final() {
                    self.reply(client, Control::Dm { poll_final: true }, vec![], false);
                }
            }
            Control::I {
                send_seq, recv_seq, ..
            } => {
                if f.info.len() > self.params.max_info_rx as usize
                    && !self.cfg.faults.accept_oversized_frames
                {
                    // HDLC_INFO_N1: information field too long.
                    self.reply(
                        client,
                        Control::Frmr { poll_final: true },
                        frmr_info(&f, 0x04),
                        false,
                    );
                    return;
                }
                if !self.cfg.faults.ignore_sequence_numbers {
                    if send_seq == (self.vr + 7) & 7
                        && let Some(last) = self.last_sent.clone()
                    {
                        // The client repeats its last frame: our reply was lost; repeat it.
                        self.transmit.push_back(last);
                        return;
                    }
                    if send_seq != self.vr {
                        // Out of sequence: ask again for what we expect.
                        self.reply(
                            client,
                            Control::Rr {
                                recv_seq: self.vr,
                                poll_final: true,
                            },
                            vec![],
                            false,
                        );
                        return;
                    }
                    if recv_seq != self.vs {
                        // HDLC_INFO_N2: N(R) acknowledges a frame we never sent.
                        self.reply(
                            client,
                            Control::Frmr { poll_final: true },
                            frmr_info(&f, 0x08),
                            false,
                        );
                        return;
                    }
                }
                self.vr = inc(send_seq);
                self.reassembly.extend_from_slice(&f.info);
                if f.segmented {
                    self.reply(
                        client,
                        Control::Rr {
                            recv_seq: self.vr,
                            poll_final: true,
                        },
                        vec![],
                        false,
                    );
                    return;
                }
                let data = std::mem::take(&mut self.reassembly);
                match data.strip_prefix(&LLC_REQUEST[..]) {
                    Some(apdu) => self.events.push_back(ServerEvent::Apdu {
                        client,
                        apdu: apdu.to_vec(),
                    }),
                    None => self.events.push_back(ServerEvent::Discarded(
                        "request without the LLC header E6 E6 00".into(),
                    )),
                }
            }
            Control::Rr { recv_seq, .. } => {
                if !self.pending.is_empty() && recv_seq == self.vs {
                    self.send_next_segment(client);
                } else if let Some(last) = self.last_sent.clone().filter(|b| {
                    FrameRepr::decode(b).is_ok_and(|f| matches!(f.control, Control::I { .. }))
                }) {
                    // The client lost our last I-frame: repeat it.
                    self.transmit.push_back(last);
                } else {
                    self.reply(
                        client,
                        Control::Rr {
                            recv_seq: self.vr,
                            poll_final: true,
                        },
                        vec![],
                        false,
                    );
                }
            }
            Control::Ui { .. } => {}
            Control::Rnr { .. } => {
                self.reply(
                    client,
                    Control::Rr {
                        recv_seq: self.vr,
                        poll_final: true,
                    },
                    vec![],
                    false,
                );
            }
            Control::Unknown(_) if self.cfg.faults.ignore_unknown_commands => {}
            // HDLC_FRAME_N5: an unknown or unexpected command.
            _ => self.reply(
                client,
                Control::Frmr { poll_final: true },
                frmr_info(&f, 0x01),
                false,
            ),
        }
    }

    /// Queues a response APDU for the connected client, segmented to the negotiated size.
    pub fn send_apdu(&mut self, apdu: &[u8]) -> Result<(), &'static str> {
        let Some(client) = self.client else {
            return Err("no client connected");
        };
        let mut info = LLC_RESPONSE.to_vec();
        info.extend_from_slice(apdu);
        let max = if self.cfg.faults.no_segmentation {
            info.len()
        } else {
            self.params.max_info_tx as usize
        };
        self.pending = segment(&info, max);
        self.send_next_segment(client);
        Ok(())
    }

    fn send_next_segment(&mut self, client: Address) {
        if let Some(info) = self.pending.pop_front() {
            let segmented = !self.pending.is_empty();
            let c = Control::I {
                send_seq: self.vs,
                recv_seq: self.vr,
                poll_final: true,
            };
            self.vs = inc(self.vs);
            self.reply(client, c, info, segmented);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.client, self.cfg.inactivity_timeout, self.last_activity) {
            (Some(_), Some(t), Some(at)) => Some(at + t),
            _ => None,
        }
    }

    /// Applies the inactivity timeout (HDLC_FRAME_P3): the link falls back to disconnected.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
            && let Some(client) = self.client.take()
        {
            self.pending.clear();
            self.events.push_back(ServerEvent::Disconnected {
                client,
                reason: "inactivity timeout",
            });
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }
}

/// FRMR information field: the rejected control byte, our V(S)/V(R) and the reason bits
/// (ISO/IEC 13239: W 0x01 undefined control, X 0x02, Y 0x04 too long, Z 0x08 invalid N(R)).
fn frmr_info(f: &FrameRepr, reason: u8) -> Vec<u8> {
    vec![f.control.to_byte(), 0x00, reason]
}

/// Recomputes the HCS and FCS of a flag-delimited frame (for the simulator quirk
/// that accepts bad checksums). `None` when the bytes do not have a frame's shape.
pub fn repair_checksums(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut b = bytes.to_vec();
    if b.len() < 9 || b.first() != Some(&0x7E) || b.last() != Some(&0x7E) {
        return None;
    }
    // Addresses: scan to the byte with LSB set, twice.
    let mut i = 3;
    for _ in 0..2 {
        let start = i;
        while *b.get(i)? & 1 == 0 {
            i += 1;
            if i - start >= 4 {
                return None;
            }
        }
        i += 1;
    }
    let ctrl_end = i + 1; // control byte
    let end = b.len() - 1; // closing flag
    if end < ctrl_end + 2 {
        return None;
    }
    if end > ctrl_end + 2 {
        // HCS over format..control, then info, then FCS.
        let hcs = crc16(&b[1..ctrl_end]).to_le_bytes();
        b.get_mut(ctrl_end..ctrl_end + 2)?.copy_from_slice(&hcs);
    }
    let fcs = crc16(&b[1..end - 2]).to_le_bytes();
    b.get_mut(end - 2..end)?.copy_from_slice(&fcs);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(max_client_tx: u16, max_server_tx: u16) -> (HdlcClient, HdlcServer) {
        let client = HdlcClient::new(ClientConfig {
            client: Address::client(16),
            server: Address::server(1, 17),
            proposal: Some(LinkParams {
                max_info_tx: max_client_tx,
                max_info_rx: 2030,
                window_tx: 1,
                window_rx: 1,
            }),
            response_timeout: Duration::from_millis(500),
            retries: 2,
        });
        let server = HdlcServer::new(ServerConfig {
            address: Address::server(1, 17),
            limits: LinkParams {
                max_info_tx: max_server_tx,
                max_info_rx: 2030,
                window_tx: 1,
                window_rx: 1,
            },
            inactivity_timeout: Some(Duration::from_secs(120)),
            any_address_form: false,
            faults: ServerLinkFaults::default(),
        });
        (client, server)
    }

    /// Moves bytes both ways until quiet; returns the APDUs the server got.
    fn pump(c: &mut HdlcClient, s: &mut HdlcServer, now: Instant) -> Vec<Vec<u8>> {
        let mut got = vec![];
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(b) = c.poll_transmit() {
                s.handle_bytes(&b, now);
                moved = true;
            }
            while let Some(e) = s.poll_event() {
                if let ServerEvent::Apdu { apdu, .. } = e {
                    got.push(apdu);
                }
            }
            while let Some(b) = s.poll_transmit() {
                c.handle_bytes(&b, now);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        got
    }

    fn events(c: &mut HdlcClient) -> Vec<ClientEvent> {
        std::iter::from_fn(|| c.poll_event())
            .filter(|e| !matches!(e, ClientEvent::FrameReceived(_)))
            .collect()
    }

    #[test]
    fn connects_and_negotiates_the_smaller_sizes() {
        let (mut c, mut s) = pair(300, 64);
        let now = Instant::now();
        c.connect(now);
        pump(&mut c, &mut s, now);
        let ev = events(&mut c);
        assert!(
            matches!(ev.as_slice(), [ClientEvent::Connected(_)]),
            "{ev:?}"
        );
        // Client may send 300 (server accepts 2030) and receives at most 64.
        assert_eq!(c.params().max_info_tx, 300);
        assert_eq!(c.params().max_info_rx, 64);
        assert_eq!(s.params().max_info_tx, 64);
    }

    #[test]
    fn segments_both_ways_and_reassembles() {
        let (mut c, mut s) = pair(40, 50);
        let now = Instant::now();
        c.connect(now);
        pump(&mut c, &mut s, now);
        events(&mut c);
        let request: Vec<u8> = (0..=200u8).collect();
        c.send_apdu(&request, now).unwrap();
        let got = pump(&mut c, &mut s, now);
        assert_eq!(got, vec![request]);
        let response: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        s.send_apdu(&response).unwrap();
        pump(&mut c, &mut s, now);
        assert_eq!(events(&mut c), vec![ClientEvent::Apdu(response)]);
        assert!(!c.busy());
        // Sequence numbers wrapped modulo 8 without complaint.
        c.disconnect(now);
        pump(&mut c, &mut s, now);
        assert_eq!(
            events(&mut c),
            vec![ClientEvent::Disconnected { by_peer: false }]
        );
    }

    #[test]
    fn retransmits_then_times_out() {
        let (mut c, _) = pair(128, 128);
        let t0 = Instant::now();
        c.connect(t0);
        assert!(c.poll_transmit().is_some());
        let deadline = c.poll_timeout().unwrap();
        c.handle_timeout(deadline);
        assert!(c.poll_transmit().is_some(), "first retransmission");
        c.handle_timeout(c.poll_timeout().unwrap());
        assert!(c.poll_transmit().is_some(), "second retransmission");
        c.handle_timeout(c.poll_timeout().unwrap());
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(
            events(&mut c),
            vec![ClientEvent::Timeout("no reply to SNRM")]
        );
    }

    /// Connects `c` to `s` and drops the connection events.
    fn connected(c: &mut HdlcClient, s: &mut HdlcServer, now: Instant) {
        c.connect(now);
        pump(c, s, now);
        events(c);
    }

    /// An I-frame with the poll bit made by hand (as the `send: {hdlc: ...}`
    /// steps do), given to the server, and the server's answer given back.
    fn answer_to_a_hand_made_poll(note_poll: bool) -> Vec<ClientEvent> {
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        connected(&mut c, &mut s, now);
        let (ns, nr) = c.sequence();
        let mut info = LLC_REQUEST.to_vec();
        info.extend_from_slice(&[0xC0, 0x01]);
        let raw = FrameRepr {
            segmented: false,
            dest: Address::server(1, 17),
            src: Address::client(16),
            control: Control::I {
                send_seq: ns,
                recv_seq: nr,
                poll_final: true,
            },
            info,
        };
        c.note_raw_i_frame(ns);
        if note_poll {
            c.note_raw_poll();
        }
        s.handle_bytes(&raw.encode(), now);
        while s.poll_event().is_some() {}
        s.send_apdu(&[0xC4]).unwrap();
        c.handle_bytes(&s.poll_transmit().unwrap(), now);
        events(&mut c)
    }

    #[test]
    fn the_answer_to_a_hand_made_poll_is_no_window_violation() {
        assert_eq!(
            answer_to_a_hand_made_poll(true),
            vec![ClientEvent::Apdu(vec![0xC4])]
        );
        // Without the note the same answer looks unpolled: what the note is for.
        let unnoted = answer_to_a_hand_made_poll(false);
        assert!(
            unnoted.iter().any(
                |e| matches!(e, ClientEvent::Violation(v) if v.contains("without being polled"))
            ),
            "{unnoted:?}"
        );
    }

    #[test]
    fn an_answer_that_does_not_acknowledge_its_request_says_so() {
        // The Gurux peer's replay shim answers our I-frame N(S)=k with an
        // I-frame whose N(R) is still k.
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        connected(&mut c, &mut s, now);
        c.send_apdu(&[1], now).unwrap();
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        while s.poll_event().is_some() {}
        let (ns, _) = c.sequence();
        let unacknowledging = FrameRepr {
            segmented: false,
            dest: Address::client(16),
            src: Address::server(1, 17),
            control: Control::I {
                send_seq: 0,
                recv_seq: (ns + 7) & 7,
                poll_final: true,
            },
            info: [&LLC_RESPONSE[..], &[0xD8, 0x01, 0x06]].concat(),
        };
        c.handle_bytes(&unacknowledging.encode(), now);
        let ev = events(&mut c);
        assert!(
            ev.iter().any(|e| matches!(e, ClientEvent::Violation(v)
                if v == "I-frame with N(R)=0 answers our I-frame N(S)=0 without acknowledging it (expected N(R)=1)")),
            "{ev:?}"
        );
        // The APDU is still given: the verdict decides what the answer means.
        assert!(
            ev.contains(&ClientEvent::Apdu(vec![0xD8, 0x01, 0x06])),
            "{ev:?}"
        );
    }

    #[test]
    fn client_events_read_in_the_domain_words() {
        let frmr = ClientEvent::FrameRejected(vec![0x97, 0x00]).to_string();
        assert_eq!(frmr, "FRMR (information 9700)");
        let v = ClientEvent::Violation("I-frame with N(R)=3, expected 4".into()).to_string();
        assert_eq!(
            v,
            "HDLC violation by the device: I-frame with N(R)=3, expected 4"
        );
        for e in [
            ClientEvent::ConnectRefused,
            ClientEvent::Disconnected { by_peer: true },
            ClientEvent::Apdu(vec![1, 2]),
            ClientEvent::Timeout("no reply to SNRM"),
        ] {
            let text = e.to_string();
            assert!(!text.contains('{') && !text.contains("by_peer"), "{text}");
        }
    }

    #[test]
    fn accepts_a_repeated_reply_without_dropping_the_request_under_way() {
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        connected(&mut c, &mut s, now);
        c.send_apdu(&[1, 2, 3], now).unwrap();
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        s.send_apdu(&[9]).unwrap();
        let reply = s.poll_transmit().unwrap();
        c.handle_bytes(&reply, now);
        assert_eq!(events(&mut c), vec![ClientEvent::Apdu(vec![9])]);
        // The next request is under way when the reply comes again (a late
        // repeat after a crossed retransmission): it is no answer to it.
        c.send_apdu(&[4], now).unwrap();
        let request = c.poll_transmit().unwrap();
        c.handle_bytes(&reply, now);
        assert!(
            matches!(events(&mut c).as_slice(), [ClientEvent::Discarded(d)] if d.contains("repeated")),
        );
        assert!(c.busy());
        // The request is still sent again when its answer does not come.
        c.handle_timeout(c.poll_timeout().unwrap());
        assert_eq!(c.poll_transmit(), Some(request));
    }

    #[test]
    fn rejects_a_stale_rr_as_the_acknowledgement_of_the_last_segment() {
        // The client sends at most 40 bytes per frame: 63 bytes go in two segments.
        let (mut c, mut s) = pair(40, 128);
        let now = Instant::now();
        connected(&mut c, &mut s, now);
        c.send_apdu(&[0x55; 60], now).unwrap();
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        let rr = s.poll_transmit().unwrap();
        c.handle_bytes(&rr, now);
        let last = c.poll_transmit().expect("the RR asks for the last segment");
        events(&mut c);
        // The same RR again (repeated by the server): it acknowledges the
        // first segment only, so the last one stays outstanding.
        c.handle_bytes(&rr, now);
        assert!(
            matches!(events(&mut c).as_slice(), [ClientEvent::Discarded(d)] if d.contains("does not acknowledge")),
        );
        assert_eq!(c.poll_transmit(), None);
        assert!(c.busy());
        c.handle_timeout(c.poll_timeout().unwrap());
        assert_eq!(c.poll_transmit(), Some(last));
    }

    #[test]
    fn abandon_ends_the_exchange_under_way() {
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        connected(&mut c, &mut s, now);
        c.send_apdu(&[1], now).unwrap();
        assert!(c.busy());
        assert!(c.send_apdu(&[2], now).is_err());
        c.abandon();
        assert!(!c.busy() && c.poll_timeout().is_none());
        c.send_apdu(&[2], now).unwrap();
        // An SNRM without an answer, given up: the link is down, not half-open.
        c.connect(now);
        c.abandon();
        assert!(!c.is_connected());
        assert!(
            c.send_apdu(&[3], now)
                .unwrap_err()
                .contains("not connected")
        );
    }

    #[test]
    fn server_discards_bad_fcs_silently_and_answers_dm_in_ndm() {
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        c.connect(now);
        let mut snrm = c.poll_transmit().unwrap();
        let n = snrm.len();
        snrm[n - 2] ^= 0xFF; // FCS
        s.handle_bytes(&snrm, now);
        assert_eq!(s.poll_transmit(), None);
        assert!(matches!(s.poll_event(), Some(ServerEvent::Discarded(_))));
        // An I-frame before SNRM: DM.
        let i = FrameRepr {
            segmented: false,
            dest: Address::server(1, 17),
            src: Address::client(16),
            control: Control::I {
                send_seq: 0,
                recv_seq: 0,
                poll_final: true,
            },
            info: vec![0xE6, 0xE6, 0x00, 0x01],
        };
        s.handle_bytes(&i.encode(), now);
        let reply = FrameRepr::decode(&s.poll_transmit().unwrap()).unwrap();
        assert!(matches!(reply.control, Control::Dm { .. }));
    }

    #[test]
    fn server_reports_every_disc_it_answers() {
        // A mode E meter returns to its sign-on after any DISC: it must see them all.
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        c.disconnect(now);
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        let reply = FrameRepr::decode(&s.poll_transmit().unwrap()).unwrap();
        assert!(matches!(reply.control, Control::Dm { .. }));
        assert_eq!(
            s.poll_event(),
            Some(ServerEvent::DiscWhileDisconnected {
                client: Address::client(16)
            })
        );
        connected(&mut c, &mut s, now);
        while s.poll_event().is_some() {}
        c.disconnect(now);
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        let reply = FrameRepr::decode(&s.poll_transmit().unwrap()).unwrap();
        assert!(matches!(reply.control, Control::Ua { .. }));
        assert!(matches!(
            s.poll_event(),
            Some(ServerEvent::Disconnected { reason: "DISC", .. })
        ));
    }

    #[test]
    fn server_with_fault_accepts_bad_checksums() {
        let (mut c, mut s) = pair(128, 128);
        s.cfg.faults.accept_bad_checksums = true;
        let now = Instant::now();
        c.connect(now);
        let mut snrm = c.poll_transmit().unwrap();
        let n = snrm.len();
        snrm[n - 2] ^= 0xFF;
        s.handle_bytes(&snrm, now);
        let reply = FrameRepr::decode(&s.poll_transmit().unwrap()).unwrap();
        assert!(matches!(reply.control, Control::Ua { .. }));
    }

    #[test]
    fn server_ignores_other_addresses_and_drops_link_on_inactivity() {
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        c.cfg.server = Address::server(1, 18);
        c.connect(now);
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        assert_eq!(s.poll_transmit(), None);
        c.cfg.server = Address::server(1, 17);
        c.connect(now);
        pump(&mut c, &mut s, now);
        assert!(s.is_connected());
        s.handle_timeout(now + Duration::from_secs(121));
        assert!(!s.is_connected());
    }

    #[test]
    fn server_answers_the_other_address_length_only_when_configured() {
        let four = Address::Four {
            upper: 1,
            lower: 17,
        };
        // Configured with the 2-byte form: the 4-byte form of 1/17 is not ours.
        let (mut c, mut s) = pair(128, 128);
        let now = Instant::now();
        c.cfg.server = four;
        c.connect(now);
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        assert_eq!(s.poll_transmit(), None);
        assert!(matches!(s.poll_event(), Some(ServerEvent::Discarded(_))));

        // Accepting any length: connected, and every answer comes from the
        // 4-byte form the client used.
        let (mut c, mut s) = pair(128, 128);
        s.cfg.any_address_form = true;
        c.cfg.server = four;
        c.connect(now);
        pump(&mut c, &mut s, now);
        assert!(s.is_connected());
        c.send_apdu(&[0xC0, 0x01, 0xC1], now).unwrap();
        while let Some(b) = c.poll_transmit() {
            s.handle_bytes(&b, now);
        }
        s.send_apdu(&[0xC4, 0x01, 0xC1, 0x00, 0x00]).unwrap();
        let reply = s.poll_transmit().unwrap();
        assert_eq!(FrameRepr::decode(&reply).unwrap().src, four);
        c.handle_bytes(&reply, now);
        assert!(
            events(&mut c)
                .iter()
                .any(|e| matches!(e, ClientEvent::Apdu(a) if a[0] == 0xC4))
        );

        // A one-byte address is not a form of 1/17.
        let (mut c, mut s) = pair(128, 128);
        s.cfg.any_address_form = true;
        c.cfg.server = Address::One(1);
        c.connect(now);
        s.handle_bytes(&c.poll_transmit().unwrap(), now);
        assert_eq!(s.poll_transmit(), None);
    }

    #[test]
    fn server_rejects_an_oversized_i_frame_with_frmr() {
        let (mut c, mut s) = pair(128, 128);
        s.cfg.limits.max_info_rx = 32;
        let now = Instant::now();
        c.connect(now);
        pump(&mut c, &mut s, now);
        events(&mut c);
        // Force the client to ignore the negotiated size.
        c.params.max_info_tx = 200;
        c.send_apdu(&[0u8; 100], now).unwrap();
        pump(&mut c, &mut s, now);
        assert!(matches!(
            events(&mut c).as_slice(),
            [ClientEvent::FrameRejected(_)]
        ));
    }
}
