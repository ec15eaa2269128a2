//! A TCP proxy in front of the test server that a test can cut or stall, to
//! show what nrls does when the network to its database fails.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The state of the proxied network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow both ways.
    Up,
    /// Nothing flows and nothing closes: packets are silently lost, as when
    /// a route or a firewall drops them. The client hears nothing, not even
    /// an error; only its own time-outs end its waits.
    Stalled,
    /// Every connection is closed and new ones are closed at once, as when
    /// the server restarts or its host refuses connections.
    Down,
}

/// A proxy on a free loopback port, forwarding to the database server.
/// Connections held across a stall are closed when the link changes again:
/// after an outage they would be dead anyway.
pub struct Proxy {
    port: u16,
    link: Arc<watch::Sender<Link>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding to `target`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the proxy: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy address: {e}"))
            .port();
        let link = Arc::new(watch::channel(Link::Up).0);
        let task = tokio::spawn(accept(listener, target, Arc::clone(&link)));
        Proxy { port, link, task }
    }

    /// Starts forwarding to the server of `url`, and returns the proxy with
    /// `url` rewritten to go through it.
    ///
    /// # Panics
    /// If `url` is not a `postgres://` URL whose host resolves.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let (_, host_port, _) = split_url(url);
        let target = tokio::net::lookup_host(&host_port)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve {host_port}"));
        let proxy = Proxy::start(target).await;
        let proxied = proxy.route(url);
        (proxy, proxied)
    }

    /// `url` (of any database on the proxied server) going through this proxy.
    ///
    /// # Panics
    /// If `url` is not a `postgres://` URL.
    pub fn route(&self, url: &str) -> String {
        let (head, _, tail) = split_url(url);
        format!("{head}127.0.0.1:{}{tail}", self.port)
    }

    /// The loopback port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes the state of the network.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set(Link::Down);
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, link: Arc<watch::Sender<Link>>) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(forward(client, target, link.subscribe()));
    }
}

/// Forwards one connection while the link stays up.
async fn forward(mut client: TcpStream, target: SocketAddr, mut link: watch::Receiver<Link>) {
    let state = *link.borrow_and_update();
    match state {
        Link::Down => return,
        // Hold the connection unanswered until the link changes, then close it.
        Link::Stalled => {
            let _ = link.changed().await;
            return;
        }
        Link::Up => {}
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        changed = link.wait_for(|l| *l != Link::Up) => {
            if changed.is_err() {
                return;
            }
        }
    }
    // The copy is dropped: nothing flows any more. A stall keeps both sockets
    // open, unanswered, until the link changes again; then they close.
    if *link.borrow_and_update() == Link::Stalled {
        let _ = link.changed().await;
    }
}

/// `postgres://user@host:port/db?x` as (`postgres://user@`, `host:port`,
/// `/db?x`), with the default port made explicit.
fn split_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not a postgres:// URL: {url}"));
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((c, h)) => (format!("{c}@"), h),
        None => (String::new(), authority),
    };
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (
        format!("{scheme}://{credentials}"),
        host_port,
        tail.to_owned(),
    )
}
