//! Validation of faiss index files before faiss sees them. faiss trusts its input: a truncated
//! or hostile file can make it abort the process or allocate gigabytes, and inside a plugin
//! that takes the host down. [`inspect`] walks every header, nested index and size field of
//! the layouts RVC users have against the file's length, without allocating, and explains
//! what is wrong in plain words. Layouts follow faiss 1.12 `impl/index_write.cpp` (unchanged
//! through 1.15); see `shared/notes/faiss.md` §8.

use std::fmt;

use thiserror::Error;

/// Largest dimension accepted; RVC uses 256 (v1) and 768 (v2).
const MAX_DIM: u64 = 1 << 16;
/// faiss's own reader rejects vectors of this many elements or more.
const MAX_ELEMENTS: u64 = 1 << 40;
/// Vectors per block in fast-scan inverted lists; the only value faiss ships by default.
const FAST_SCAN_BLOCK: u64 = 32;

/// Distance the index was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    L2,
    InnerProduct,
}

/// The index types RVC Stage reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IndexLayout {
    /// `IVF{n},Flat`, as RVC's trainer writes it (`IwFl`).
    IvfFlat,
    /// `IVF{n},PQ{m}x4fs,RFlat`: 4-bit PQ fast-scan lists refined by exact distances to the
    /// stored vectors (`IxRF` over `IwPf`).
    IvfPqFastScanRefineFlat {
        /// PQ sub-quantizers.
        pq_m: u64,
        /// Whether codes encode residuals to the coarse centroid (`x4fsr`).
        by_residual: bool,
        /// How many candidates per wanted neighbour the refine step re-ranks.
        k_factor: f32,
    },
}

/// What a valid index file holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexSummary {
    pub layout: IndexLayout,
    /// Vector dimension.
    pub dim: u64,
    /// Number of stored vectors.
    pub vectors: u64,
    pub metric: Metric,
    /// Inverted lists (coarse centroids).
    pub nlist: u64,
    /// Lists searched per query, as saved in the file.
    pub nprobe: u64,
}

impl fmt::Display for IndexSummary {
    /// faiss's factory string, then the size: "IVF316,PQ384x4fs,RFlat, 100 000 vectors, 768-d".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layout {
            IndexLayout::IvfFlat => write!(f, "IVF{},Flat", self.nlist)?,
            IndexLayout::IvfPqFastScanRefineFlat { pq_m, by_residual, .. } => {
                write!(f, "IVF{},PQ{pq_m}x4fs{},RFlat", self.nlist, if by_residual { "r" } else { "" })?
            }
        }
        write!(f, ", {} vectors, {}-d", thousands(self.vectors), self.dim)?;
        if self.metric == Metric::InnerProduct {
            f.write_str(", inner product")?;
        }
        Ok(())
    }
}

/// `n` with a space between groups of three digits.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// Why a file is not a usable index. Messages name the field and byte offset, so a user can
/// tell a truncated download from a wrong file type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexFileError {
    #[error(
        "the index file ends early: {what} needs {needed} bytes at byte {offset}, but only {available} \
         are left (an incomplete copy or download?)"
    )]
    Truncated { what: &'static str, offset: usize, needed: u64, available: usize },
    #[error(
        "unsupported index type {found} at byte {offset}: RVC Stage reads IVF-Flat indexes (\"IwFl\", what RVC \
         writes) and IVF-PQ fast-scan indexes with a flat refine (\"IxRF\" over \"IwPf\")"
    )]
    UnsupportedType { found: FourCc, offset: usize },
    #[error("unsupported {what} {found} at byte {offset}: expected {expected}")]
    UnsupportedPart { what: &'static str, found: FourCc, offset: usize, expected: &'static str },
    #[error("{what} is {value} at byte {offset}, but {expected}")]
    BadValue { what: &'static str, value: i128, offset: usize, expected: Expected },
    #[error("the file has {0} bytes after the end of the index (not an index file, or two files joined?)")]
    TrailingBytes(usize),
}

/// Four bytes naming a faiss structure, shown as text where printable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FourCc(pub [u8; 4]);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            write!(f, "\"{}\"", self.0.iter().map(|&b| b as char).collect::<String>())
        } else {
            write!(f, "{:02x?}", self.0)
        }
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a field should have been, for [`IndexFileError::BadValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this value, derived from earlier fields.
    Equal(i128),
    /// Within this inclusive range.
    Between(i128, i128),
    /// A named rule that the value breaks.
    Rule(&'static str),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Equal(v) => write!(f, "the rest of the file requires {v}"),
            Self::Between(lo, hi) => write!(f, "it must be between {lo} and {hi}"),
            Self::Rule(rule) => f.write_str(rule),
        }
    }
}

type Result<T> = std::result::Result<T, IndexFileError>;

/// Checks that `bytes` is a complete, consistent index of a supported layout and returns what
/// it holds. Reads every structure faiss will read, allocates nothing, and never panics.
pub fn inspect(bytes: &[u8]) -> Result<IndexSummary> {
    inspect_parts(bytes).map(|(summary, _)| summary)
}

/// Where the two indexes nested in an `IxRF` file lie: each range is a complete serialized
/// index that faiss can read on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefineParts {
    /// The IVF-PQ fast-scan index (`IwPf`).
    pub base: std::ops::Range<usize>,
    /// The flat index of exact vectors (`IxF2` / `IxFI`).
    pub refine: std::ops::Range<usize>,
}

/// [`inspect`], also locating the nested indexes of refine layouts.
pub(super) fn inspect_parts(bytes: &[u8]) -> Result<(IndexSummary, Option<RefineParts>)> {
    let mut reader = Reader { bytes, offset: 0 };
    let start = reader.offset;
    let found = reader.fourcc("index type")?;
    let (summary, parts) = match &found.0 {
        b"IwFl" => (ivf_flat(&mut reader)?, None),
        b"IxRF" => refine_flat(&mut reader).map(|(summary, parts)| (summary, Some(parts)))?,
        _ => return Err(IndexFileError::UnsupportedType { found, offset: start }),
    };
    match reader.remaining() {
        0 => Ok((summary, parts)),
        extra => Err(IndexFileError::TrailingBytes(extra)),
    }
}

/// The common index header (index_write.cpp `write_index_header`).
struct Header {
    dim: u64,
    vectors: u64,
    metric: Metric,
}

fn header(r: &mut Reader) -> Result<Header> {
    let dim = r.i32_in("dimension", 1, MAX_DIM as i128)? as u64;
    let vectors = r.i64_in("vector count", 0, MAX_ELEMENTS as i128)? as u64;
    r.skip(16, "reserved header fields")?;
    let trained_at = r.offset;
    if r.u8_in("trained flag", 0, 1)? == 0 {
        return Err(IndexFileError::BadValue {
            what: "trained flag",
            value: 0,
            offset: trained_at,
            expected: Expected::Rule("an index that was never trained cannot be searched"),
        });
    }
    let metric_offset = r.offset;
    let metric = match r.i32("metric")? {
        0 => Metric::InnerProduct,
        1 => Metric::L2,
        other => {
            return Err(IndexFileError::BadValue {
                what: "metric",
                value: other.into(),
                offset: metric_offset,
                expected: Expected::Rule("RVC Stage supports only inner product (0) and L2 (1)"),
            })
        }
    };
    Ok(Header { dim, vectors, metric })
}

/// A nested flat index holding exactly `rows` vectors of the parent's dimension and metric:
/// the coarse quantizer's centroids, or the refine step's vectors.
fn flat(r: &mut Reader, parent: &Header, rows: u64, what: &'static str) -> Result<()> {
    let start = r.offset;
    let fourcc = r.fourcc(what)?;
    let metric = match &fourcc.0 {
        b"IxF2" => Metric::L2,
        b"IxFI" => Metric::InnerProduct,
        _ => {
            return Err(IndexFileError::UnsupportedPart {
                what,
                found: fourcc,
                offset: start,
                expected: "\"IxF2\" or \"IxFI\"",
            })
        }
    };
    let h = header(r)?;
    r.expect_equal(h.dim, parent.dim, "dimension of the nested index", start + 4)?;
    if metric != parent.metric || h.metric != parent.metric {
        return Err(IndexFileError::UnsupportedPart {
            what,
            found: fourcc,
            offset: start,
            expected: "the same metric as the index it belongs to",
        });
    }
    r.expect_equal(h.vectors, rows, "row count of the nested index", start + 8)?;
    let floats = r.u64("float count of the nested index")?;
    r.expect_equal(floats, rows.saturating_mul(parent.dim), "float count of the nested index", r.offset - 8)?;
    r.skip_elements(floats, 4, what)
}

/// The IVF header: common header, list count, nprobe, coarse quantizer, direct map.
fn ivf(r: &mut Reader) -> Result<(Header, u64, u64)> {
    let h = header(r)?;
    let nlist = r.u64_in("list count", 1, MAX_ELEMENTS as i128)?;
    let nprobe = r.u64_in("nprobe", 1, MAX_ELEMENTS as i128)?;
    flat(r, &h, nlist, "coarse quantizer")?;
    let map = r.u8_in("direct map type", 0, 2)?;
    let ids = r.u64("direct map length")?;
    r.skip_elements(ids, 8, "direct map")?;
    if map == 2 {
        let pairs = r.u64("direct map hash table length")?;
        r.skip_elements(pairs, 16, "direct map hash table")?;
    }
    Ok((h, nlist, nprobe))
}

/// `IwFl`: IVF header, then ArrayInvertedLists (`ilar`) of raw float vectors and ids.
fn ivf_flat(r: &mut Reader) -> Result<IndexSummary> {
    let (h, nlist, nprobe) = ivf(r)?;
    let lists_at = r.offset;
    r.expect_fourcc("inverted lists", b"ilar", "\"ilar\" (in-memory array lists)")?;
    r.u64_equal("list count of the inverted lists", nlist)?;
    let code_size = r.u64("code size")?;
    r.expect_equal(code_size, h.dim * 4, "code size of IVF-Flat lists", r.offset - 8)?;
    let sizes = list_sizes(r, nlist)?;
    let mut total = 0u64;
    for size in sizes {
        let size = size?;
        total = total.saturating_add(size);
        r.skip_elements(size, code_size, "list vectors")?;
        list_ids(r, size, h.vectors)?;
    }
    r.expect_equal(total, h.vectors, "sum of the list lengths", lists_at)?;
    Ok(IndexSummary { layout: IndexLayout::IvfFlat, dim: h.dim, vectors: h.vectors, metric: h.metric, nlist, nprobe })
}

/// Skips a list's ids, checking each names a stored vector: faiss uses them unchecked to
/// address the refine vectors, so a flipped id would read out of bounds.
fn list_ids(r: &mut Reader, count: u64, vectors: u64) -> Result<()> {
    let start = r.offset;
    r.skip_elements(count, 8, "list ids")?;
    for (i, id) in r.bytes[start..r.offset].chunks_exact(8).map(le_u64).enumerate() {
        if id >= vectors {
            return Err(IndexFileError::BadValue {
                what: "vector id in an inverted list",
                value: (id as i64).into(),
                offset: start + 8 * i,
                expected: Expected::Between(0, vectors as i128 - 1),
            });
        }
    }
    Ok(())
}

/// Reads the list-size table of `ilar` ("full": one size per list; "sprs": (list, size) pairs
/// for non-empty lists) and returns an iterator over the sizes of the non-empty lists in file
/// order, re-reading the table from the borrowed bytes rather than allocating a copy.
fn list_sizes<'a>(r: &mut Reader<'a>, nlist: u64) -> Result<impl Iterator<Item = Result<u64>> + 'a> {
    let kind_at = r.offset;
    let found = r.fourcc("list size table")?;
    let count = r.u64("list size table length")?;
    let table_at = r.offset;
    let sparse = match &found.0 {
        b"full" => {
            r.expect_equal(count, nlist, "list size table length", table_at - 8)?;
            false
        }
        b"sprs" => {
            if count % 2 != 0 || count / 2 > nlist {
                return Err(IndexFileError::BadValue {
                    what: "sparse list size table length",
                    value: count.into(),
                    offset: table_at - 8,
                    expected: Expected::Rule("it must be even and hold at most one pair per list"),
                });
            }
            true
        }
        _ => {
            return Err(IndexFileError::UnsupportedPart {
                what: "list size table",
                found,
                offset: kind_at,
                expected: "\"full\" or \"sprs\"",
            })
        }
    };
    r.skip_elements(count, 8, "list size table")?;
    let table = &r.bytes[table_at..r.offset];
    // Validate the table once up front, so that list ids are known to be in order.
    let mut previous_list = None;
    for (i, value) in table.chunks_exact(8).map(le_u64).enumerate() {
        if sparse && i % 2 == 0 {
            if value >= nlist || previous_list.is_some_and(|p| value <= p) {
                return Err(IndexFileError::BadValue {
                    what: "list number in the sparse size table",
                    value: value.into(),
                    offset: table_at + 8 * i,
                    expected: Expected::Rule("list numbers must be below the list count and increasing"),
                });
            }
            previous_list = Some(value);
        } else if value > MAX_ELEMENTS {
            return Err(IndexFileError::BadValue {
                what: "list length",
                value: value.into(),
                offset: table_at + 8 * i,
                expected: Expected::Between(0, MAX_ELEMENTS as i128),
            });
        }
    }
    let step = if sparse { 2 } else { 1 };
    Ok(table.chunks_exact(8).skip(step - 1).step_by(step).map(le_u64).filter(|&size| size > 0).map(Ok))
}

/// `IwPf`: IVF header, PQ fast-scan parameters, the product quantizer and BlockInvertedLists.
/// Returns the summary and the PQ's (m, by_residual).
fn ivf_pq_fast_scan(r: &mut Reader) -> Result<(Header, u64, u64, u64, bool)> {
    let (h, nlist, nprobe) = ivf(r)?;
    let by_residual = r.u8_in("by-residual flag", 0, 1)? == 1;
    r.u64("code size")?; // faiss recomputes it from M2
    r.i32_in("block size (bbs)", FAST_SCAN_BLOCK as i128, FAST_SCAN_BLOCK as i128)?;
    let m2_at = r.offset;
    let m2 = r.u64("padded sub-quantizer count (M2)")?;
    // Search-time knobs faiss acts on without checks: keep them to values faiss writes.
    r.i32_in("fast-scan implementation", 0, 15)?;
    r.u64_in("query block size", 0, 0)?;
    r.u64_equal("PQ dimension", h.dim)?;
    let m_at = r.offset;
    let m = r.u64_in("PQ sub-quantizer count (M)", 1, h.dim as i128)?;
    if h.dim % m != 0 {
        return Err(IndexFileError::BadValue {
            what: "PQ sub-quantizer count (M)",
            value: m.into(),
            offset: m_at,
            expected: Expected::Rule("it must divide the dimension"),
        });
    }
    r.u64_in("PQ bits per code", 4, 4)?;
    let centroids = r.u64("PQ centroid count")?;
    r.expect_equal(centroids, h.dim * 16, "PQ centroid float count", r.offset - 8)?;
    r.skip_elements(centroids, 4, "PQ centroids")?;
    r.expect_equal(m2, m.div_ceil(2) * 2, "padded sub-quantizer count (M2)", m2_at)?;

    let lists_at = r.offset;
    r.expect_fourcc("inverted lists", b"ilbl", "\"ilbl\" (fast-scan block lists)")?;
    r.u64_equal("list count of the inverted lists", nlist)?;
    r.u64_equal("code size marker of block lists", u64::MAX)?;
    r.u64_equal("vectors per block", FAST_SCAN_BLOCK)?;
    let block_size = FAST_SCAN_BLOCK * m2 / 2;
    r.u64_equal("block size in bytes", block_size)?;
    let mut total = 0u64;
    for _ in 0..nlist {
        let ids = r.u64("list length")?;
        list_ids(r, ids, h.vectors)?;
        let codes = r.u64("list code bytes")?;
        r.expect_equal(codes, ids.div_ceil(FAST_SCAN_BLOCK) * block_size, "list code bytes", r.offset - 8)?;
        r.skip_elements(codes, 1, "list codes")?;
        total = total.saturating_add(ids);
    }
    r.expect_equal(total, h.vectors, "sum of the list lengths", lists_at)?;
    Ok((h, nlist, nprobe, m, by_residual))
}

/// `IxRF`: header, the base index (IVF-PQ fast-scan), the refine vectors, k_factor.
fn refine_flat(r: &mut Reader) -> Result<(IndexSummary, RefineParts)> {
    let h = header(r)?;
    let base_at = r.offset;
    r.expect_fourcc("refined index", b"IwPf", "\"IwPf\" (IVF-PQ fast-scan)")?;
    let (base, nlist, nprobe, pq_m, by_residual) = ivf_pq_fast_scan(r)?;
    r.expect_equal(base.dim, h.dim, "dimension of the refined index", base_at + 4)?;
    r.expect_equal(base.vectors, h.vectors, "vector count of the refined index", base_at + 8)?;
    if base.metric != h.metric {
        return Err(IndexFileError::BadValue {
            what: "metric of the refined index",
            value: (base.metric == Metric::L2).into(),
            offset: base_at + 33,
            expected: Expected::Rule("it must match the refine index's metric"),
        });
    }
    let refine_at = r.offset;
    flat(r, &h, h.vectors, "refine vectors")?;
    let parts = RefineParts { base: base_at..refine_at, refine: refine_at..r.offset };
    let k_at = r.offset;
    let k_factor = r.f32("refine k_factor")?;
    if !(k_factor.is_finite() && (1.0..=1024.0).contains(&k_factor)) {
        return Err(IndexFileError::BadValue {
            what: "refine k_factor",
            value: k_factor as i128,
            offset: k_at,
            expected: Expected::Rule("it must be a number from 1 to 1024"),
        });
    }
    let summary = IndexSummary {
        layout: IndexLayout::IvfPqFastScanRefineFlat { pq_m, by_residual, k_factor },
        dim: h.dim,
        vectors: h.vectors,
        metric: h.metric,
        nlist,
        nprobe,
    };
    Ok((summary, parts))
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("chunks_exact(8) yields 8 bytes"))
}

/// A cursor over the file that turns every short read into [`IndexFileError::Truncated`].
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let start = self.offset;
        self.skip(N as u64, what)?;
        Ok(self.bytes[start..self.offset].try_into().expect("skip advanced exactly N bytes"))
    }

    fn skip(&mut self, count: u64, what: &'static str) -> Result<()> {
        if count > self.remaining() as u64 {
            return Err(IndexFileError::Truncated {
                what,
                offset: self.offset,
                needed: count,
                available: self.remaining(),
            });
        }
        self.offset += count as usize;
        Ok(())
    }

    /// Skips `count` elements of `size` bytes, checking the count before multiplying.
    fn skip_elements(&mut self, count: u64, size: u64, what: &'static str) -> Result<()> {
        if count >= MAX_ELEMENTS {
            return Err(IndexFileError::BadValue {
                what,
                value: count.into(),
                offset: self.offset,
                expected: Expected::Rule("faiss refuses more than 2^40 elements"),
            });
        }
        self.skip(count * size, what)
    }

    fn fourcc(&mut self, what: &'static str) -> Result<FourCc> {
        self.take::<4>(what).map(FourCc)
    }

    /// Reads a fourcc that must be `wanted` (`expected` describes it for the error).
    fn expect_fourcc(&mut self, what: &'static str, wanted: &[u8; 4], expected: &'static str) -> Result<()> {
        let offset = self.offset;
        let found = self.fourcc(what)?;
        if &found.0 == wanted {
            Ok(())
        } else {
            Err(IndexFileError::UnsupportedPart { what, found, offset, expected })
        }
    }

    fn u8_in(&mut self, what: &'static str, lo: i128, hi: i128) -> Result<u8> {
        let at = self.offset;
        let [value] = self.take::<1>(what)?;
        check_range(what, value.into(), at, lo, hi).map(|_| value)
    }

    fn i32(&mut self, what: &'static str) -> Result<i32> {
        self.take::<4>(what).map(i32::from_le_bytes)
    }

    fn i32_in(&mut self, what: &'static str, lo: i128, hi: i128) -> Result<i32> {
        let at = self.offset;
        let value = self.i32(what)?;
        check_range(what, value.into(), at, lo, hi).map(|_| value)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.take::<8>(what).map(u64::from_le_bytes)
    }

    /// Reads a u64 that earlier fields fully determine.
    fn u64_equal(&mut self, what: &'static str, expected: u64) -> Result<u64> {
        let at = self.offset;
        let value = self.u64(what)?;
        self.expect_equal(value, expected, what, at).map(|_| value)
    }

    fn u64_in(&mut self, what: &'static str, lo: i128, hi: i128) -> Result<u64> {
        let at = self.offset;
        let value = self.u64(what)?;
        check_range(what, value.into(), at, lo, hi).map(|_| value)
    }

    fn i64_in(&mut self, what: &'static str, lo: i128, hi: i128) -> Result<i64> {
        let at = self.offset;
        let value = self.take::<8>(what).map(i64::from_le_bytes)?;
        check_range(what, value.into(), at, lo, hi).map(|_| value)
    }

    fn f32(&mut self, what: &'static str) -> Result<f32> {
        self.take::<4>(what).map(f32::from_le_bytes)
    }

    fn expect_equal(&self, value: u64, expected: u64, what: &'static str, offset: usize) -> Result<()> {
        if value == expected {
            Ok(())
        } else {
            Err(IndexFileError::BadValue {
                what,
                value: value.into(),
                offset,
                expected: Expected::Equal(expected.into()),
            })
        }
    }
}

fn check_range(what: &'static str, value: i128, offset: usize, lo: i128, hi: i128) -> Result<()> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(IndexFileError::BadValue { what, value, offset, expected: Expected::Between(lo, hi) })
    }
}
