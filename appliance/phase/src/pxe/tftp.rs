//! The read-only TFTP server: only the network boot programs, by name. Each transfer runs on
//! its own socket (RFC 1350's transfer id) and thread, with the block size and window the
//! client asked for within the server's bounds (phase_core::net::tftp), a timeout and a retry
//! count per window, and an overall time bound; transfers are capped in all and per client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use phase_core::net::tftp::{self, Packet, ReadRequest};

use super::{Limits, Pxe};

/// Transfers running, per client address.
#[derive(Default)]
struct Sessions {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
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
        let Some(slot) = take_slot(&sessions, from.ip(), &limits) else {
            refuse(tftp::ACCESS, "too many transfers");
            continue;
        };
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
        let spawned = std::thread::Builder::new().name("pxe-tftp-xfer".into()).stack_size(128 << 10).spawn(move || {
            let _slot = slot;
            let started = Instant::now();
            match send_file(&transfer, from, &request, &file, &limits) {
                Ok(()) => {
                    stats.tftp_completed.fetch_add(1, Relaxed);
                    log!("pxe: sent {} ({} bytes) to {from} in {} ms", request.name, file.len(), started.elapsed().as_millis());
                }
                // UEFI firmware asks for the size first and then ends that transfer itself.
                Err(TransferError::Aborted(_)) => {
                    stats.tftp_aborted.fetch_add(1, Relaxed);
                }
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
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::Aborted(code) => write!(f, "the client ended the transfer (error {code})"),
            TransferError::Socket { what, error } => write!(f, "{what}: {error}"),
            TransferError::TooLong(secs) => write!(f, "not done within {secs} s"),
            TransferError::NoOptionsAck => f.write_str("no ACK of the options"),
            TransferError::NoAck { block, tries } => write!(f, "no ACK after block {block} ({tries} tries)"),
        }
    }
}

impl std::error::Error for TransferError {}


/// Sends `file` to `to` as `request` asked: an OACK first if it asked for options (acknowledged
/// by ACK 0), then windows of blocks, each window sent again on a timeout up to the retry count.
/// A client that acknowledges part of a window gets the rest from there.
pub fn send_file(socket: &UdpSocket, to: SocketAddr, request: &ReadRequest, file: &[u8], limits: &Limits) -> Result<(), TransferError> {
    let agreed = request.agree();
    let block = agreed.blksize as usize;
    // Blocks 1..=last; a file that fills its last block exactly ends with an empty one.
    let last = (file.len() / block + 1) as u64;
    let give_up = Instant::now() + limits.tftp_session_max;
    socket.set_read_timeout(Some(limits.tftp_timeout)).map_err(|error| TransferError::Socket { what: "timeout", error })?;
    let send = |b: &[u8]| socket.send_to(b, to).map(drop).map_err(|error| TransferError::Socket { what: "send", error });
    let mut buf = [0u8; 516];
    // Waits for an ACK from the client's port; Ok(None) on a timeout.
    let recv_ack = |buf: &mut [u8]| -> Result<Option<u16>, TransferError> {
        loop {
            if Instant::now() > give_up {
                return Err(TransferError::TooLong(limits.tftp_session_max.as_secs()));
            }
            match socket.recv_from(buf) {
                Ok((n, from)) if from == to => match Packet::parse(&buf[..n]) {
                    Ok(Packet::Ack(b)) => return Ok(Some(b)),
                    Ok(Packet::Error(code)) => return Err(TransferError::Aborted(code)),
                    _ => continue,
                },
                Ok(_) => continue, // another host: not this transfer
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
                Err(error) => return Err(TransferError::Socket { what: "receive", error }),
            }
        }
    };
    if agreed.oack {
        let oack = request.oack(&agreed, file.len() as u64);
        let mut tries = 0;
        loop {
            send(&oack)?;
            match recv_ack(&mut buf)? {
                Some(0) => break,
                Some(_) => continue,
                None => {
                    tries += 1;
                    if tries > limits.tftp_retries {
                        return Err(TransferError::NoOptionsAck);
                    }
                }
            }
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
            match recv_ack(&mut buf)? {
                Some(b) => {
                    let offset = b.wrapping_sub((base - 1) as u16) as u64;
                    if offset == 0 || offset > end - base + 1 {
                        continue; // a duplicate or stale ACK: wait on
                    }
                    base += offset;
                    tries = 0;
                    break;
                }
                None => {
                    tries += 1;
                    if tries > limits.tftp_retries {
                        return Err(TransferError::NoAck { block: base - 1, tries });
                    }
                    break; // send the window again
                }
            }
        }
    }
    Ok(())
}
