//! Mapping byte offsets of the normalized text back to the original input.
//!
//! Normalization is done chunk by chunk; every chunk either copies its bytes unchanged
//! (an *identity* piece, where offsets shift by a constant) or rewrites them (a *rewritten*
//! piece, where any offset inside maps to the whole original chunk). Only pieces are
//! stored, so memory is proportional to the number of rewritten chunks, not to the input.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    norm: usize,
    norm_len: usize,
    orig: usize,
    orig_len: usize,
    identity: bool,
}

/// Offset map from normalized text to original text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OffsetMap {
    pieces: Vec<Piece>,
}

impl OffsetMap {
    pub(crate) fn push_identity(&mut self, norm: usize, orig: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.pieces.last_mut()
            && last.identity
            && last.norm + last.norm_len == norm
            && last.orig + last.orig_len == orig
        {
            last.norm_len += len;
            last.orig_len += len;
            return;
        }
        self.pieces.push(Piece {
            norm,
            norm_len: len,
            orig,
            orig_len: len,
            identity: true,
        });
    }

    pub(crate) fn push_rewritten(
        &mut self,
        norm: usize,
        norm_len: usize,
        orig: usize,
        orig_len: usize,
    ) {
        if norm_len == 0 {
            return;
        }
        self.pieces.push(Piece {
            norm,
            norm_len,
            orig,
            orig_len,
            identity: false,
        });
    }

    /// Original offset of the start of a normalized span.
    pub(crate) fn start(&self, pos: usize) -> usize {
        let idx = self.pieces.partition_point(|p| p.norm <= pos);
        let Some(p) = idx.checked_sub(1).map(|i| self.pieces[i]) else {
            return 0;
        };
        if p.identity {
            p.orig + (pos - p.norm).min(p.orig_len)
        } else if pos >= p.norm + p.norm_len {
            p.orig + p.orig_len
        } else {
            p.orig
        }
    }

    /// Original offset of the end of a normalized span.
    pub(crate) fn end(&self, pos: usize) -> usize {
        let idx = self.pieces.partition_point(|p| p.norm < pos);
        let Some(p) = idx.checked_sub(1).map(|i| self.pieces[i]) else {
            return 0;
        };
        if p.identity {
            p.orig + (pos - p.norm).min(p.orig_len)
        } else {
            p.orig + p.orig_len
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetMap;

    #[test]
    fn maps_identity_and_rewritten_pieces() {
        // original: "ab" + "\u{200B}" (3 bytes, removed) + "cd" + "ｅ" (3 bytes -> "e") + "f"
        let mut m = OffsetMap::default();
        m.push_identity(0, 0, 2);
        m.push_identity(2, 5, 2);
        m.push_rewritten(4, 1, 7, 3);
        m.push_identity(5, 10, 1);
        assert_eq!(m.start(0), 0);
        assert_eq!(m.end(2), 2);
        assert_eq!(m.start(2), 5);
        assert_eq!(m.end(4), 7);
        assert_eq!(m.start(4), 7);
        assert_eq!(m.end(5), 10);
        assert_eq!(m.start(5), 10);
        assert_eq!(m.end(6), 11);
    }
}
