//! Cuts of single links between nodes, finer than madsim's per-node clogs: only the
//! controller quorum's connections, or only the brokers' (replication) ones. A cut link
//! behaves like a partitioned TCP path: connecting and every read and write on it stall
//! until the cut heals, then carry on.

use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use sluice_core::env::{BoxFuture, Listener, Network, Stream};
use sluice_net::tcp::TcpNetwork;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Default)]
struct State {
    /// (from node, to address) pairs that carry nothing.
    cut: BTreeSet<(i32, String)>,
    /// Stalled on a cut; all woken when any cut heals.
    parked: Vec<Waker>,
}

/// The link cuts in force, shared by the nemesis and every node's network.
#[derive(Clone, Default)]
pub struct Links(Arc<Mutex<State>>);

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cut(&self, from: i32, to: &str) {
        self.lock().cut.insert((from, to.to_string()));
    }

    pub fn heal(&self, from: i32, to: &str) {
        let mut st = self.lock();
        st.cut.remove(&(from, to.to_string()));
        for w in st.parked.drain(..) {
            w.wake();
        }
    }

    /// Ready if the link `(from, to)` is up; else parks `cx`'s waker until a heal.
    fn poll_up(&self, link: &(i32, String), cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.cut.contains(link) {
            st.parked.push(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// `node`'s network: TCP, through these cuts.
    pub fn network(&self, node: i32) -> LinkedNetwork {
        LinkedNetwork {
            node,
            links: self.clone(),
        }
    }
}

pub struct LinkedNetwork {
    node: i32,
    links: Links,
}

impl Network for LinkedNetwork {
    fn listen<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        TcpNetwork.listen(addr)
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let link = (self.node, addr.to_string());
            std::future::poll_fn(|cx| self.links.poll_up(&link, cx)).await;
            let inner = TcpNetwork.connect(addr).await?;
            Ok(Box::new(LinkedStream {
                inner,
                link,
                links: self.links.clone(),
            }) as Box<dyn Stream>)
        })
    }
}

struct LinkedStream {
    inner: Box<dyn Stream>,
    /// (this node, the address connected to)
    link: (i32, String),
    links: Links,
}

impl AsyncRead for LinkedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.links.poll_up(&this.link, cx));
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LinkedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.links.poll_up(&this.link, cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.links.poll_up(&this.link, cx));
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
