//! The `stat` operation: what is at a path, following links that stay inside
//! the root (so `stat` describes what `get` would fetch).

use super::list::entry;
use super::ctx::Ctx;
use crate::paths::{self, RelPath};
use crate::proto::msg;
use crate::proto::ProtoError;
use rustix::fd::AsFd;
use rustix::fs::OFlags;
use serde_json::{Map, Value};

/// The `stat` header.
pub fn start(req: &msg::PathReq, id: Option<&Value>, ctx: &Ctx) -> Result<Map<String, Value>, ProtoError> {
    let p = RelPath::parse(&req.path)?;
    let root = paths::open_root(&ctx.cfg.root)?;
    let fd = paths::open(root.as_fd(), &p, OFlags::PATH)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| p.error(e))?;
    Ok(msg::stat(&req.path, &entry(req.path.clone(), &st), id))
}
