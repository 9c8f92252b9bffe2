//! Batched UDP I/O for the DNS readers: `recvmmsg` takes every query waiting on the socket
//! (up to [`BATCH`]) in one call, and the replies to a batch leave in one `sendmmsg`. Under
//! load a reader otherwise makes two syscalls per query, and their entry and exit cost was a
//! visible share of a reader's time beside the answering itself.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};

/// Queries taken per `recvmmsg`.
pub const BATCH: usize = 32;

/// Room for one query. A larger datagram is dropped: DNS queries are a few hundred bytes (Go's
/// DNS server, which Consul uses, reads 512).
const SLOT: usize = 4096;

/// Buffers for one reader's `recvmmsg`.
pub struct Receiver {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Datagrams the last [`Receiver::recv`] took.
    taken: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        // SAFETY: both are plain C structs for which all-zero is a valid value.
        let (addr, hdr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Receiver {
            bufs: vec![0; BATCH * SLOT],
            addrs: vec![addr; BATCH],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH],
            hdrs: vec![hdr; BATCH],
            taken: 0,
        }
    }
}

impl Receiver {
    /// Blocks (within the socket's read timeout) for at least one datagram, then takes what
    /// else is already waiting, up to [`BATCH`]. Returns how many were taken.
    pub fn recv(&mut self, sock: &std::net::UdpSocket) -> io::Result<usize> {
        self.taken = 0;
        for (i, ((iov, hdr), addr)) in self.iovs.iter_mut().zip(&mut self.hdrs).zip(&mut self.addrs).enumerate() {
            iov.iov_base = self.bufs[i * SLOT..].as_mut_ptr().cast();
            iov.iov_len = SLOT;
            hdr.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: every header points at an iovec, a buffer slot and an address of this
        // Receiver, all alive and unmoved for the call; the kernel writes at most SLOT bytes
        // per slot and at most msg_namelen bytes of address.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.taken = n as usize;
        Ok(self.taken)
    }

    /// The `i`th datagram of the last batch and its sender; None when it did not fit a slot or
    /// its sender is not an IP address.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.taken {
            return None;
        }
        let hdr = &self.hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (hdr.msg_len as usize).min(SLOT);
        Some((&self.bufs[i * SLOT..i * SLOT + len], socket_addr(&self.addrs[i], hdr.msg_hdr.msg_namelen)?))
    }
}

/// The IP address and port the kernel wrote into `s` (`len` bytes of it).
fn socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is this platform's type, which SockAddrStorage wraps; the kernel
    // wrote `len` bytes of a valid address into it.
    let addr = unsafe {
        *storage.view_as::<libc::sockaddr_storage>() = *s;
        SockAddr::new(storage, len)
    };
    addr.as_socket()
}

/// Sends each `(payload, destination)` with as few `sendmmsg` calls as the kernel allows. A
/// datagram the kernel refuses (for its destination) is dropped, as a failed `sendto` would
/// be, and the rest still go.
pub fn send_all(sock: &std::net::UdpSocket, out: &[(Vec<u8>, SocketAddr)]) {
    let addrs: Vec<SockAddr> = out.iter().map(|(_, a)| SockAddr::from(*a)).collect();
    let mut iovs: Vec<libc::iovec> =
        out.iter().map(|(b, _)| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() }).collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&addrs)
        .map(|(iov, addr)| {
            // SAFETY: all-zero is a valid mmsghdr; the fields that matter are set below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut at = 0;
    while at < hdrs.len() {
        // SAFETY: the headers from `at` point at iovecs, payloads and addresses that live in
        // this function; the kernel only reads them.
        let n =
            unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs[at..].as_mut_ptr(), (hdrs.len() - at) as libc::c_uint, 0) };
        if n > 0 {
            at += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // The datagram at `at` was refused: drop it and go on with the next.
        tracing::debug!(error = %e, to = %out[at].1, "DNS UDP reply not sent");
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_every_waiting_datagram_and_the_replies_reach_each_sender() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let clients: Vec<_> = (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("query {i}").as_bytes(), server.local_addr().unwrap()).unwrap();
        }
        // An oversized datagram is taken but not handed out.
        clients[0].send_to(&vec![7u8; SLOT + 1], server.local_addr().unwrap()).unwrap();

        let mut r = Receiver::default();
        let mut got = Vec::new();
        while got.len() < 4 {
            let n = r.recv(&server).unwrap();
            got.extend((0..n).map(|i| r.datagram(i).map(|(d, a)| (d.to_vec(), a))));
        }
        assert_eq!(got.len(), 4);
        let replies: Vec<(Vec<u8>, SocketAddr)> =
            got.iter().flatten().map(|(d, a)| ([b"re: ".as_slice(), d].concat(), *a)).collect();
        assert_eq!(replies.len(), 3, "the oversized datagram is dropped");
        send_all(&server, &replies);
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("re: query {i}").as_bytes());
            assert_eq!(from, server.local_addr().unwrap());
        }
    }

    #[test]
    fn an_ipv6_sender_is_answered_at_its_address() {
        let server = std::net::UdpSocket::bind("[::1]:0").unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
        client.send_to(b"q6", server.local_addr().unwrap()).unwrap();
        let mut r = Receiver::default();
        assert_eq!(r.recv(&server).unwrap(), 1);
        let (data, from) = r.datagram(0).unwrap();
        assert_eq!((data, from), (b"q6".as_slice(), client.local_addr().unwrap()));
        send_all(&server, &[(b"a6".to_vec(), from)]);
        client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a6");
    }
}
