//! Host inventory over [`RemoteExec`](super::RemoteExec): filled in below.
