//! The read-only TFTP server: only the network boot programs, by name. Each transfer runs on
//! its own socket (RFC 1350's transfer id) and thread, with the block size and window the
//! client asked for within the server's bounds (phase_core::net::tftp), a timeout and a retry
//! count per window, and an overall time bound; transfers are capped in all and per client.
//!
//! A transfer takes one of those places only once the client has acknowledged something (the
//! options, or the first block): before that it is pending, holds no place, and the newest
//! pending transfers displace the oldest beyond `MAX_PENDING`. Read requests cost nothing to
//! forge or re-send, and an attacker who never acknowledges (or cannot: its source addresses
//! are forged) would otherwise hold every place while honest clients are refused.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Transfers not yet acknowledged at all, at most; a new one displaces the oldest. A client
/// answers within its round trip, so an honest transfer is displaced only by this many
/// requests arriving within that time.
pub const MAX_PENDING: usize = 64;
/// How often a transfer waiting for an ACK looks whether it was displaced.
const STOP_CHECK: Duration = Duration::from_millis(100);

use phase_core::net::tftp::{self, Packet, ReadRequest};

use super::{Limits, Pxe};

/// Transfers running, per client address, and those pending (oldest first, each with the
/// flag that stops it).
#[derive(Default)]
struct Sessions {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    pending: VecDeque<(u64, Arc<AtomicBool>)>,
    next: u64,
}

/// A pending transfer's entry; leaves the list when dropped.
struct Pending {
    sessions: Arc<Mutex<Sessions>>,
    seq: u64,
    stop: Arc<AtomicBool>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.pending.retain(|(n, _)| *n != self.seq);
    }
}

/// Enters a new transfer as pending, displacing the oldest one beyond `MAX_PENDING` (true:
/// one was displaced).
fn pend(sessions: &Arc<Mutex<Sessions>>) -> (Pending, bool) {
    let mut s = sessions.lock().unwrap_or_else(|p| p.into_inner());
    let mut displaced = false;
    while s.pending.len() >= MAX_PENDING {
        if let Some((_, stop)) = s.pending.pop_front() {
            stop.store(true, Relaxed);
            displaced = true;
        }
    }
    let (seq, stop) = (s.next, Arc::new(AtomicBool::new(false)));
    s.next += 1;
    s.pending.push_back((seq, stop.clone()));
    (Pending { sessions: sessions.clone(), seq, stop }, displaced)
}

struct Slot {
    sessions: Arc<Mutex<Sessions>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.total -= 1;
        if let Some(n) = s.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&self.client);
            }
        }
    }
}

fn take_slot(sessions: &Arc<Mutex<Sessions>>, client: IpAddr, limits: &Limits) -> Option<Slot> {
    let mut s = sessions.lock().unwrap_or_else(|p| p.into_inner());
    let mine = s.per_client.get(&client).copied().unwrap_or(0);
    if s.total >= limits.tftp_sessions || mine >= limits.tftp_sessions_per_client {
        return None;
    }
    s.total += 1;
    *s.per_client.entry(client).or_insert(0) += 1;
    Some(Slot { sessions: sessions.clone(), client })
}

pub fn serve(pxe: &Arc<Pxe>, socket: UdpSocket, interface: &str, limits: Limits) {
    let sessions = Arc::new(Mutex::new(Sessions::default()));
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                log!("pxe: TFTP receive: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let refuse = |code: u16, message: &str| {
            pxe.stats.tftp_refused.fetch_add(1, Relaxed);
            let _ = socket.send_to(&tftp::error(code, message), from);
        };
        let request = match Packet::parse(&buf[..n]) {
            Ok(Packet::Read(r)) => r,
            Ok(Packet::Write) => {
                refuse(tftp::ACCESS, "read-only server");
                continue;
            }
            // ACKs and ERRORs belong to transfers, which have their own sockets.
            Ok(_) => {
                pxe.stats.tftp_malformed.fetch_add(1, Relaxed);
                continue;
            }
            Err(e) => {
                pxe.stats.tftp_malformed.fetch_add(1, Relaxed);
                let _ = socket.send_to(&tftp::error(tftp::ILLEGAL, &e.to_string()), from);
                continue;
            }
        };
        let name = request.name.trim_start_matches('/');
        let Some(file) = pxe.program(name).cloned() else {
            refuse(tftp::NOT_FOUND, "no such file");
            continue;
        };
        let (pending, displaced) = pend(&sessions);
        if displaced {
            pxe.stats.tftp_displaced.fetch_add(1, Relaxed);
        }
        let local = match socket.local_addr() {
            Ok(SocketAddr::V4(a)) => SocketAddr::new(IpAddr::V4(if a.ip().is_unspecified() { pxe.address } else { *a.ip() }), 0),
            _ => SocketAddr::new(IpAddr::V4(pxe.address), 0),
        };
        let transfer = match UdpSocket::bind(local) {
            Ok(s) => s,
            Err(e) => {
                log!("pxe: TFTP transfer socket on {local}: {e}");
                refuse(tftp::ACCESS, "no socket");
                continue;
            }
        };
        let _ = crate::sys::bind_to_device(&transfer, interface);
        let stats = pxe.stats.clone();
        let sessions = sessions.clone();
        let spawned = std::thread::Builder::new().name("pxe-tftp-xfer".into()).stack_size(128 << 10).spawn(move || {
            let started = Instant::now();
            let stop = pending.stop.clone();
            let mut pending = Some(pending);
            let mut slot = None;
            // At the client's first ACK the transfer leaves the pending list for a place.
            let mut confirm = || {
                slot = take_slot(&sessions, from.ip(), &limits);
                pending = None;
                slot.is_some()
            };
            match send_file(&transfer, from, &request, &file, &limits, &stop, &mut confirm) {
                Ok(()) => {
                    stats.tftp_completed.fetch_add(1, Relaxed);
                    log!("pxe: sent {} ({} bytes) to {from} in {} ms", request.name, file.len(), started.elapsed().as_millis());
                }
                // UEFI firmware asks for the size first and then ends that transfer itself.
                Err(TransferError::Aborted(_)) => {
                    stats.tftp_aborted.fetch_add(1, Relaxed);
                }
                Err(TransferError::NoPlace) => {
                    stats.tftp_refused.fetch_add(1, Relaxed);
                    let _ = transfer.send_to(&tftp::error(tftp::ACCESS, "too many transfers"), from);
                }
                Err(TransferError::Displaced) => {}
                Err(why) => {
                    stats.tftp_failed.fetch_add(1, Relaxed);
                    log!("pxe: TFTP {} to {from}: {why}", request.name);
                }
            }
        });
        if let Err(e) = spawned {
            log!("pxe: TFTP transfer thread: {e}");
            pxe.stats.tftp_failed.fetch_add(1, Relaxed);
        }
    }
}

/// Why a transfer did not finish.
#[derive(Debug)]
pub enum TransferError {
    /// The client ended it with an ERROR (its code).
    Aborted(u16),
    Socket { what: &'static str, error: std::io::Error },
    /// The whole transfer's bound passed (seconds).
    TooLong(u64),
    /// No ACK of the options after every retry.
    NoOptionsAck,
    /// No ACK after `block` in `tries` tries.
    NoAck { block: u64, tries: u32 },
    /// Newer transfers displaced it before the client acknowledged anything.
    Displaced,
    /// Acknowledged, but every place (in all, or for this client) was taken.
    NoPlace,
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::Aborted(code) => write!(f, "the client ended the transfer (error {code})"),
            TransferError::Socket { what, error } => write!(f, "{what}: {error}"),
            TransferError::TooLong(secs) => write!(f, "not done within {secs} s"),
            TransferError::NoOptionsAck => f.write_str("no ACK of the options"),
            TransferError::NoAck { block, tries } => write!(f, "no ACK after block {block} ({tries} tries)"),
            TransferError::Displaced => f.write_str("displaced by newer requests before any ACK"),
            TransferError::NoPlace => f.write_str("no transfer place left"),
        }
    }
}

impl std::error::Error for TransferError {}


/// Sends `file` to `to` as `request` asked: an OACK first if it asked for options (acknowledged
/// by ACK 0), then windows of blocks, each window sent again on a timeout up to the retry count.
/// A client that acknowledges part of a window gets the rest from there. `confirm` is called
/// at the client's first ACK (false: no place, the transfer ends); until then `stop` ends it,
/// and it is sent again at most `tftp_first_retries` times.
pub fn send_file(
    socket: &UdpSocket,
    to: SocketAddr,
    request: &ReadRequest,
    file: &[u8],
    limits: &Limits,
    stop: &AtomicBool,
    confirm: &mut dyn FnMut() -> bool,
) -> Result<(), TransferError> {
    let agreed = request.agree();
    let block = agreed.blksize as usize;
    // Blocks 1..=last; a file that fills its last block exactly ends with an empty one.
    let last = (file.len() / block + 1) as u64;
    let give_up = Instant::now() + limits.tftp_session_max;
    socket.set_read_timeout(Some(limits.tftp_timeout.clamp(Duration::from_millis(1), STOP_CHECK))).map_err(|error| TransferError::Socket { what: "timeout", error })?;
    let mut confirmed = false;
    let send = |b: &[u8]| socket.send_to(b, to).map(drop).map_err(|error| TransferError::Socket { what: "send", error });
    let mut buf = [0u8; 516];
    // Waits for an ACK from the client's port; Ok(None) on a timeout. Until the first ACK, a
    // displaced transfer ends within STOP_CHECK.
    let recv_ack = |buf: &mut [u8], confirmed: bool| -> Result<Option<u16>, TransferError> {
        let timeout = Instant::now() + limits.tftp_timeout;
        loop {
            if Instant::now() > give_up {
                return Err(TransferError::TooLong(limits.tftp_session_max.as_secs()));
            }
            if !confirmed && stop.load(Relaxed) {
                return Err(TransferError::Displaced);
            }
            match socket.recv_from(buf) {
                Ok((n, from)) if from == to => match Packet::parse(&buf[..n]) {
                    Ok(Packet::Ack(b)) => return Ok(Some(b)),
                    Ok(Packet::Error(code)) => return Err(TransferError::Aborted(code)),
                    _ => continue,
                },
                Ok(_) => continue, // another host: not this transfer
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if Instant::now() >= timeout {
                        return Ok(None);
                    }
                }
                Err(error) => return Err(TransferError::Socket { what: "receive", error }),
            }
        }
    };
    let retries = |confirmed: bool| if confirmed { limits.tftp_retries } else { limits.tftp_first_retries.min(limits.tftp_retries) };
    if agreed.oack {
        let oack = request.oack(&agreed, file.len() as u64);
        let mut tries = 0;
        loop {
            send(&oack)?;
            match recv_ack(&mut buf, confirmed)? {
                Some(0) => break,
                Some(_) => continue,
                None => {
                    tries += 1;
                    if tries > retries(confirmed) {
                        return Err(TransferError::NoOptionsAck);
                    }
                }
            }
        }
        confirmed = true;
        if !confirm() {
            return Err(TransferError::NoPlace);
        }
    }
    let mut base = 1u64; // first block of the window
    let mut tries = 0;
    while base <= last {
        let end = (base + agreed.windowsize as u64 - 1).min(last);
        for i in base..=end {
            let from = ((i - 1) as usize * block).min(file.len());
            let to_byte = (from + block).min(file.len());
            send(&tftp::data(i as u16, &file[from..to_byte]))?;
        }
        // ACKs carry 16-bit block numbers: map one onto this window (0 = the block before it).
        loop {
            match recv_ack(&mut buf, confirmed)? {
                Some(b) => {
                    let offset = b.wrapping_sub((base - 1) as u16) as u64;
                    if offset == 0 || offset > end - base + 1 {
                        continue; // a duplicate or stale ACK: wait on
                    }
                    if !confirmed {
                        confirmed = true;
                        if !confirm() {
                            return Err(TransferError::NoPlace);
                        }
                    }
                    base += offset;
                    tries = 0;
                    break;
                }
                None => {
                    tries += 1;
                    if tries > retries(confirmed) {
                        return Err(TransferError::NoAck { block: base - 1, tries });
                    }
                    break; // send the window again
                }
            }
        }
    }
    Ok(())
}
