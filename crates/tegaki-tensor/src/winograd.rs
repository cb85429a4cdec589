//! Winograd F(2x2, 3x3): 3x3, stride-1 convolutions with 2.25x fewer
//! multiplications than im2col + GEMM.
//!
//! Each 2x2 block ("tile") of output comes from a 4x4 input patch `d`:
//! `Y = Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A` (Lavin & Gray, 2015), which computes
//! the same cross-correlation as PyTorch's `Conv2d`. With the 16 products of
//! `⊙` laid out as 16 matrices, the sum over channels becomes 16 GEMMs:
//!
//! * weights `U = G g Gᵀ`: `[16][OC][C]` ([`transform_weights`]);
//! * inputs `V = Bᵀ d B`: `[16][C][T]` for `T` tiles ([`transform_input`]);
//! * products `M_ξ = U_ξ · V_ξ`: `[16][OC][T]` (the caller's GEMMs);
//! * outputs `Aᵀ M A` plus bias, scattered into NCHW ([`transform_output`]).
//!
//! For 32 -> 64 channels on 14x14 planes that is 1.6 M multiply-adds per
//! sample in the GEMMs instead of 3.6 M, plus ~0.13 M additions in the
//! transforms. The transforms' rounding differs from direct summation by a
//! few ulps of the inputs' magnitude (see the tests), well inside f32 training
//! noise.

use std::sync::atomic::{AtomicU8, Ordering};

/// Values per transformed tile (4x4).
pub const TILE_VALUES: usize = 16;

/// 0: not decided yet (read `TEGAKI_NO_WINOGRAD` on first use), 1 on, 2 off.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Turns the Winograd paths of `Conv2d` on or off for the whole process. On by
/// default where the CPU has AVX-512 ([`crate::simd::level`] 2), unless the
/// environment variable `TEGAKI_NO_WINOGRAD` is set (the switch exists to
/// measure what Winograd changes: speed, or rounding). Without AVX-512 the
/// transforms run their portable one-tile-at-a-time versions, which made W3
/// inference 2x slower than im2col on the baseline instruction set, so they
/// stay off there unless turned on here.
pub fn set_enabled(on: bool) {
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether layers should use Winograd where it applies.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os("TEGAKI_NO_WINOGRAD").is_none() && crate::simd::level() == 2;
            // A concurrent set_enabled wins over the environment.
            let _ = STATE.compare_exchange(
                0,
                if on { 1 } else { 2 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            STATE.load(Ordering::Relaxed) == 1
        }
        state => state == 1,
    }
}

/// The tile grid of one sample: a 3x3, stride-1 convolution of a
/// `channels x height x width` input with `pad` zeros on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGrid {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Zero rows above and below.
    pub pad_h: usize,
    /// Zero columns left and right.
    pub pad_w: usize,
    /// Output height, `height + 2 * pad_h - 2`.
    pub out_h: usize,
    /// Output width, `width + 2 * pad_w - 2`.
    pub out_w: usize,
    /// Tile rows, `ceil(out_h / 2)`.
    pub tiles_h: usize,
    /// Tile columns, `ceil(out_w / 2)`.
    pub tiles_w: usize,
}

impl TileGrid {
    /// The grid of a `(channels, height, width)` input padded by `(pad_h,
    /// pad_w)`, or `None` when the output would be empty.
    pub fn new(
        (channels, height, width): (usize, usize, usize),
        (pad_h, pad_w): (usize, usize),
    ) -> Option<Self> {
        let out_h = (height + 2 * pad_h).checked_sub(2)?;
        let out_w = (width + 2 * pad_w).checked_sub(2)?;
        if out_h == 0 || out_w == 0 || channels == 0 {
            return None;
        }
        Some(Self {
            channels,
            height,
            width,
            pad_h,
            pad_w,
            out_h,
            out_w,
            tiles_h: out_h.div_ceil(2),
            tiles_w: out_w.div_ceil(2),
        })
    }

    /// Tiles in one sample.
    pub fn tiles(&self) -> usize {
        self.tiles_h * self.tiles_w
    }

    /// Scalars in one input sample.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Scratch [`transform_input`] needs: one zero-padded channel plane.
    pub fn scratch_len(&self) -> usize {
        (2 * self.tiles_h + 2) * (2 * self.tiles_w + 2)
    }
}

/// `U = G g Gᵀ` for every `(o, c)` of a `(OC, C, 3, 3)` weight, written as
/// `u[ξ * OC * C + o * C + c]`.
///
/// # Panics
/// If `w.len() != 9 * out_channels * channels` or `u` has another length
/// than `16 * out_channels * channels`.
pub fn transform_weights(w: &[f32], out_channels: usize, channels: usize, u: &mut [f32]) {
    let plane = out_channels * channels;
    assert_eq!(w.len(), 9 * plane, "winograd: weight length");
    assert_eq!(u.len(), TILE_VALUES * plane, "winograd: U length");
    for (k, g) in w.chunks_exact(9).enumerate() {
        // G g (4x3), then (G g) Gᵀ (4x4); G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
        let mut gg = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = a;
            gg[1][j] = 0.5 * (a + b + c);
            gg[2][j] = 0.5 * (a - b + c);
            gg[3][j] = c;
        }
        for (i, row) in gg.iter().enumerate() {
            let [a, b, c] = *row;
            let t = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            for (j, v) in t.into_iter().enumerate() {
                u[(i * 4 + j) * plane + k] = v;
            }
        }
    }
}

/// `V = Bᵀ d B` for every tile of one `C x H x W` sample: value `ξ` of
/// channel `c`'s tile `t` (row-major over the tile grid) goes to
/// `v[ξ * sixteenth + c * ld + col0 + t]`, where `sixteenth = v.len() / 16`.
/// So the tiles of several samples sit side by side in `[16][C][ld]`.
/// `scratch` holds [`TileGrid::scratch_len`] values.
///
/// AVX-512 when available (16 tiles of a tile row per vector), else the
/// portable loop; both compute the same operations in the same order.
///
/// # Panics
/// If a slice is too short for `grid`, `ld` and `col0`.
pub fn transform_input(
    x: &[f32],
    grid: &TileGrid,
    v: &mut [f32],
    ld: usize,
    col0: usize,
    scratch: &mut [f32],
) {
    check_input(x, grid, v, ld, col0, scratch);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == 2 {
        // SAFETY: AVX-512F is present (level 2); the lengths were checked.
        unsafe { avx512::transform_input(x, grid, v, ld, col0, scratch) };
        return;
    }
    transform_input_portable(x, grid, v, ld, col0, scratch);
}

fn check_input(x: &[f32], g: &TileGrid, v: &[f32], ld: usize, col0: usize, scratch: &[f32]) {
    assert_eq!(x.len(), g.input_len(), "winograd: input length");
    assert!(col0 + g.tiles() <= ld, "winograd: tiles overflow ld");
    assert!(
        v.len() / TILE_VALUES >= g.channels * ld,
        "winograd: V too short"
    );
    assert!(
        scratch.len() >= g.scratch_len(),
        "winograd: scratch too short"
    );
}

/// Copies channel plane `plane` into the zero-padded `padded`
/// (`(2 * tiles_h + 2) x (2 * tiles_w + 2)`), so every patch is in bounds.
#[inline(always)]
fn pad_plane(plane: &[f32], g: &TileGrid, padded: &mut [f32]) {
    let pw = 2 * g.tiles_w + 2;
    let rows = 2 * g.tiles_h + 2;
    padded.fill(0.0);
    for (y, src) in plane.chunks_exact(g.width).enumerate() {
        let r = y + g.pad_h;
        if r >= rows {
            break;
        }
        let n = g.width.min(pw - g.pad_w);
        // An element loop, not copy_from_slice: rows are short (14 values
        // for a 14x14 plane) and a memmove call per row cost more than the copy.
        for (d, &s) in padded[r * pw + g.pad_w..][..n].iter_mut().zip(&src[..n]) {
            *d = s;
        }
    }
}

crate::simd_dispatch! {
    /// [`transform_input`] one tile at a time.
    fn transform_input_portable(
        x: &[f32],
        grid: &TileGrid,
        v: &mut [f32],
        ld: usize,
        col0: usize,
        scratch: &mut [f32],
    ) {
        let g = *grid;
        let sixteenth = v.len() / TILE_VALUES;
        let pw = 2 * g.tiles_w + 2;
        let padded = &mut scratch[..g.scratch_len()];
        let tw = g.tiles_w;
        for (c, plane) in x.chunks_exact(g.height * g.width).enumerate() {
            pad_plane(plane, &g, padded);
            for ty in 0..g.tiles_h {
                let base = c * ld + col0 + ty * tw;
                let d = |i: usize| &padded[(2 * ty + i) * pw..][..pw];
                let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
                for tx in 0..tw {
                    let q = 2 * tx;
                    let row = |r: &[f32]| -> [f32; 4] { [r[q], r[q + 1], r[q + 2], r[q + 3]] };
                    let (a, b, cc, e) = (row(d0), row(d1), row(d2), row(d3));
                    // Bᵀ over rows.
                    let mut t = [[0.0f32; 4]; 4];
                    for j in 0..4 {
                        t[0][j] = a[j] - cc[j];
                        t[1][j] = b[j] + cc[j];
                        t[2][j] = cc[j] - b[j];
                        t[3][j] = b[j] - e[j];
                    }
                    // B over columns.
                    for (i, r) in t.iter().enumerate() {
                        let at = (i * 4) * sixteenth + base + tx;
                        v[at] = r[0] - r[2];
                        v[at + sixteenth] = r[1] + r[2];
                        v[at + 2 * sixteenth] = r[2] - r[1];
                        v[at + 3 * sixteenth] = r[1] - r[3];
                    }
                }
            }
        }
    }
}

/// What follows the convolution, applied in the output transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// The convolution plus its bias.
    Bias,
    /// Then `max(0, ·)`.
    Relu,
    /// Then `max(0, ·)` and a 2x2, stride-2 max-pool: each tile's four
    /// outputs pool into one value. The output is `OC x ⌊OH/2⌋ x ⌊OW/2⌋`
    /// (as `MaxPool2d`, a last odd row or column is dropped).
    ReluPool,
}

impl Epilogue {
    /// The output plane `(height, width)` for `grid`.
    pub fn out_dims(self, grid: &TileGrid) -> (usize, usize) {
        match self {
            Epilogue::Bias | Epilogue::Relu => (grid.out_h, grid.out_w),
            Epilogue::ReluPool => (grid.out_h / 2, grid.out_w / 2),
        }
    }
}

/// `Y = Aᵀ M A` plus `bias[o]` and `epilogue`, for the tiles of one sample,
/// read from `m[ξ * sixteenth + o * ld + col0 + t]` (`sixteenth = m.len() /
/// 16`), written into its `OC x OH' x OW'` output `y` (see
/// [`Epilogue::out_dims`]).
///
/// AVX-512 when available, else the portable loop; both compute the same
/// operations in the same order.
///
/// # Panics
/// If a slice is too short for `grid`, `ld` and `col0`.
pub fn transform_output(
    m: &[f32],
    grid: &TileGrid,
    ld: usize,
    col0: usize,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
    y: &mut [f32],
) {
    let (h, w) = epilogue.out_dims(grid);
    let oc = y.len() / (h * w).max(1);
    check_output(grid, bias, epilogue, y, oc);
    assert!(m.len() / TILE_VALUES >= oc * ld, "winograd: M too short");
    assert!(col0 + grid.tiles() <= ld, "winograd: tiles overflow ld");
    output(Source::M { m, ld, col0 }, grid, bias, epilogue, y);
}

/// The whole convolution of one sample with few input channels: `M = U · V`
/// is summed in registers over the `C` channels (no GEMM, no `M` buffer),
/// then transformed as [`transform_output`] does. `u` is `[16][OC][C]` from
/// [`transform_weights`], `v` the sample's `[16][C][tiles]` from
/// [`transform_input`] (`ld = tiles`, `col0 = 0`).
///
/// # Panics
/// If a slice length disagrees with `grid` and `channels`.
pub fn multiply_transform(
    u: &[f32],
    v: &[f32],
    grid: &TileGrid,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
    y: &mut [f32],
) {
    let c = grid.channels;
    let oc = u.len() / (TILE_VALUES * c);
    assert_eq!(u.len(), TILE_VALUES * oc * c, "winograd: U length");
    check_output(grid, bias, epilogue, y, oc);
    assert_eq!(
        v.len(),
        TILE_VALUES * c * grid.tiles(),
        "winograd: V length"
    );
    output(Source::UV { u, v }, grid, bias, epilogue, y);
}

/// Checks `y` and `bias` against `grid` and `oc` output channels.
fn check_output(g: &TileGrid, bias: Option<&[f32]>, epilogue: Epilogue, y: &[f32], oc: usize) {
    let (h, w) = epilogue.out_dims(g);
    assert_eq!(y.len(), oc * h * w, "winograd: output length");
    assert!(
        bias.is_none_or(|b| b.len() >= oc),
        "winograd: bias too short"
    );
}

/// The output transform from `src`: AVX-512 when available, else portable.
/// The caller checked the slice lengths.
fn output(
    src: Source<'_>,
    grid: &TileGrid,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == 2 {
        // SAFETY: AVX-512F is present (level 2); the lengths were checked.
        unsafe { avx512::transform_output(src, grid, bias, epilogue, y) };
        return;
    }
    transform_output_portable(src, grid, bias, epilogue, y);
}

/// Where the output transform reads `M` from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A GEMM's product, `[16][OC][ld]`, this sample's tiles from `col0`.
    M {
        m: &'a [f32],
        ld: usize,
        col0: usize,
    },
    /// `U [16][OC][C]` and one sample's `V [16][C][tiles]`.
    UV { u: &'a [f32], v: &'a [f32] },
}

impl Source<'_> {
    /// `M[ξ][o][t]` for tile `t` of the sample.
    #[inline(always)]
    fn get(&self, xi: usize, o: usize, t: usize, oc: usize, channels: usize, tiles: usize) -> f32 {
        match *self {
            Source::M { m, ld, col0 } => m[xi * (m.len() / TILE_VALUES) + o * ld + col0 + t],
            Source::UV { u, v } => {
                let uo = &u[(xi * oc + o) * channels..][..channels];
                let mut acc = uo[0] * v[xi * channels * tiles + t];
                for (c, &w) in uo.iter().enumerate().skip(1) {
                    acc += w * v[(xi * channels + c) * tiles + t];
                }
                acc
            }
        }
    }
}

crate::simd_dispatch! {
    /// [`transform_output`] and [`multiply_transform`] one tile at a time.
    fn transform_output_portable(
        src: Source<'_>,
        grid: &TileGrid,
        bias: Option<&[f32]>,
        epilogue: Epilogue,
        y: &mut [f32],
    ) {
        let g = *grid;
        let (oh, ow, tw) = (g.out_h, g.out_w, g.tiles_w);
        let (ph, pw) = epilogue.out_dims(&g);
        let plane_len = ph * pw;
        if plane_len == 0 {
            return;
        }
        let oc = y.len() / plane_len;
        let relu = |v: f32| if epilogue == Epilogue::Bias { v } else { v.max(0.0) };
        for (o, plane) in y.chunks_exact_mut(plane_len).enumerate() {
            let b = bias.map_or(0.0, |b| b[o]);
            for ty in 0..g.tiles_h {
                for tx in 0..tw {
                    let t = ty * tw + tx;
                    // Loops, not `array::from_fn`/`map`, whose closures would
                    // not get this variant's target features.
                    let mut mm = [0.0f32; 16];
                    for (xi, v) in mm.iter_mut().enumerate() {
                        *v = src.get(xi, o, t, oc, g.channels, g.tiles());
                    }
                    // Aᵀ over rows, then A over columns.
                    let mut s = [[0.0f32; 4]; 2];
                    for j in 0..4 {
                        s[0][j] = mm[j] + mm[4 + j] + mm[8 + j];
                        s[1][j] = mm[4 + j] - mm[8 + j] - mm[12 + j];
                    }
                    let mut out = [[0.0f32; 2]; 2];
                    for (pair, r) in out.iter_mut().zip(&s) {
                        *pair = [relu(r[0] + r[1] + r[2] + b), relu(r[1] - r[2] - r[3] + b)];
                    }
                    let (yr, xc) = (2 * ty, 2 * tx);
                    if epilogue == Epilogue::ReluPool {
                        if yr + 1 < oh && xc + 1 < ow {
                            plane[ty * pw + tx] = out[0][0].max(out[0][1]).max(out[1][0]).max(out[1][1]);
                        }
                        continue;
                    }
                    for (i, pair) in out.iter().enumerate() {
                        if yr + i >= oh {
                            break;
                        }
                        plane[(yr + i) * ow + xc] = pair[0];
                        if xc + 1 < ow {
                            plane[(yr + i) * ow + xc + 1] = pair[1];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Epilogue, Source, TILE_VALUES, TileGrid, pad_plane};
    use std::arch::x86_64::*;

    /// The low `n` lanes (n <= 16).
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 { !0 } else { (1u16 << n) - 1 }
    }

    /// Up to 15 tiles of a tile row per step: the row's `2k + 2` columns
    /// are loaded as two vectors and split into the patch's four columns
    /// (`2tx`, `2tx + 1`, `2tx + 2`, `2tx + 3`) with one permute each.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the caller checked the slice lengths.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transform_input(
        x: &[f32],
        g: &TileGrid,
        v: &mut [f32],
        ld: usize,
        col0: usize,
        scratch: &mut [f32],
    ) {
        let sixteenth = v.len() / TILE_VALUES;
        let pw = 2 * g.tiles_w + 2;
        let padded = &mut scratch[..g.scratch_len()];
        let tw = g.tiles_w;
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let cols = [0, 1, 2, 3].map(|j| _mm512_add_epi32(even, _mm512_set1_epi32(j)));
        // Narrow planes (a padded row fits one vector): two tile rows per
        // step, lanes 0..tw from the first and tw..2tw from the second (whose
        // patches start two padded rows lower), which the layout of V keeps
        // adjacent. Halves the work for 14x14 planes (7 tiles a row).
        let paired = pw <= 16;
        let pair_cols = [0, 1, 2, 3].map(|j| {
            let idx: [i32; 16] = std::array::from_fn(|l| {
                let (row, tx) = if l < tw { (0, l) } else { (1, l - tw) };
                if l < 2 * tw {
                    (16 * row + 2 * tx + j) as i32
                } else {
                    0
                }
            });
            // SAFETY: reads 16 i32 from a 16-element array.
            unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
        });
        // Bᵀ `$d` B for `$k` tiles, stored from column `$base` of V.
        macro_rules! emit {
            ($d:expr, $k:expr, $base:expr) => {{
                let (d, out_mask, base) = ($d, lanes($k), $base);
                let mut t = [[_mm512_setzero_ps(); 4]; 4];
                for j in 0..4 {
                    t[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
                    t[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
                    t[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
                    t[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
                }
                for (i, r) in t.iter().enumerate() {
                    let vals = [
                        _mm512_sub_ps(r[0], r[2]),
                        _mm512_add_ps(r[1], r[2]),
                        _mm512_sub_ps(r[2], r[1]),
                        _mm512_sub_ps(r[1], r[3]),
                    ];
                    for (j, val) in vals.into_iter().enumerate() {
                        // SAFETY: (i*4 + j) * sixteenth + base + k <=
                        // 16 * sixteenth, as checked by the caller.
                        unsafe {
                            let p = v.as_mut_ptr().add((i * 4 + j) * sixteenth + base);
                            _mm512_mask_storeu_ps(p, out_mask, val);
                        }
                    }
                }
            }};
        }
        // d[i][j], patch row i and column j for every lane: row i's values
        // are the `lo` vector from `padded[$start + i * pw..]` and the `hi`
        // one `$hi` further, permuted by `$idx[j]`.
        macro_rules! gather {
            ($start:expr, $hi:expr, $lo_mask:expr, $hi_mask:expr, $idx:expr) => {{
                let mut d = [[_mm512_setzero_ps(); 4]; 4];
                for (i, di) in d.iter_mut().enumerate() {
                    // SAFETY: the callers' masks keep both loads inside the
                    // padded plane (see each call).
                    let (lo, hi) = unsafe {
                        let p = padded.as_ptr().add($start + i * pw);
                        (
                            _mm512_maskz_loadu_ps($lo_mask, p),
                            _mm512_maskz_loadu_ps($hi_mask, p.add($hi)),
                        )
                    };
                    for (dij, idx) in di.iter_mut().zip($idx) {
                        *dij = _mm512_permutex2var_ps(lo, *idx, hi);
                    }
                }
                d
            }};
        }
        for (c, plane) in x.chunks_exact(g.height * g.width).enumerate() {
            pad_plane(plane, g, padded);
            let mut ty = 0;
            while ty < g.tiles_h {
                let base = c * ld + col0 + ty * tw;
                if paired && ty + 1 < g.tiles_h {
                    // Rows 2ty + i and 2ty + 2 + i <= 2 * tiles_h + 1, pw
                    // columns each.
                    let row = lanes(pw);
                    emit!(
                        gather!(2 * ty * pw, 2 * pw, row, row, &pair_cols),
                        2 * tw,
                        base
                    );
                    ty += 2;
                    continue;
                }
                let mut tx0 = 0;
                while tx0 < tw {
                    // Row 2ty + i, columns 2tx0 .. 2tx0 + 2k + 2 <= pw.
                    let k = (tw - tx0).min(15);
                    let n = 2 * k + 2;
                    let (lo_mask, hi_mask) = (lanes(n), lanes(n.saturating_sub(16)));
                    let d = gather!(2 * ty * pw + 2 * tx0, 16, lo_mask, hi_mask, &cols);
                    emit!(d, k, base + tx0);
                    tx0 += k;
                }
                ty += 1;
            }
        }
    }

    /// 16 tiles of a tile row per step. `M` comes from memory or is summed
    /// over channels in registers; the two output columns of each tile are
    /// interleaved with one permute per 16 outputs, or the tile pooled.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the caller checked the slice lengths.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transform_output(
        src: Source<'_>,
        g: &TileGrid,
        bias: Option<&[f32]>,
        epilogue: Epilogue,
        y: &mut [f32],
    ) {
        let (oh, ow, tw) = (g.out_h, g.out_w, g.tiles_w);
        let (ph, pw) = epilogue.out_dims(g);
        let plane_len = ph * pw;
        if plane_len == 0 {
            return;
        }
        let oc = y.len() / plane_len;
        let (channels, tiles) = (g.channels, g.tiles());
        let zip_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let zip_hi = _mm512_add_epi32(zip_lo, _mm512_set1_epi32(8));
        let zero = _mm512_setzero_ps();
        // When every tile pools into one output (even planes), the pooled
        // plane is the tile grid itself, in the same order: its tiles are
        // taken as one row, 16 at a time, whatever the row width.
        let flat = epilogue == Epilogue::ReluPool && oh % 2 == 0 && ow % 2 == 0;
        let (rows, width) = if flat { (1, tiles) } else { (g.tiles_h, tw) };
        // Aᵀ `$mm` A + bias and epilogue for tiles `$tx0 .. $tx0 + $k` of tile
        // row `$ty` (of `rows` x `width`), stored into `$plane`. Macros, not
        // closures: closures (and `array::map`) are not compiled with this
        // function's target features, so their intrinsics would not inline.
        macro_rules! emit {
            ($mm:expr, $b:expr, $plane:expr, $ty:expr, $tx0:expr, $k:expr) => {{
                let (mm, b, plane, ty, tx0, k) = ($mm, $b, $plane, $ty, $tx0, $k);
                let mut s = [[zero; 4]; 2];
                for j in 0..4 {
                    s[0][j] = _mm512_add_ps(_mm512_add_ps(mm[j], mm[4 + j]), mm[8 + j]);
                    s[1][j] = _mm512_sub_ps(_mm512_sub_ps(mm[4 + j], mm[8 + j]), mm[12 + j]);
                }
                let mut out = [[zero; 2]; 2];
                for (pair, r) in out.iter_mut().zip(&s) {
                    let sum3 = _mm512_add_ps(_mm512_add_ps(r[0], r[1]), r[2]);
                    let diff3 = _mm512_sub_ps(_mm512_sub_ps(r[1], r[2]), r[3]);
                    *pair = [_mm512_add_ps(sum3, b), _mm512_add_ps(diff3, b)];
                    if epilogue != Epilogue::Bias {
                        pair[0] = _mm512_max_ps(pair[0], zero);
                        pair[1] = _mm512_max_ps(pair[1], zero);
                    }
                }
                if epilogue == Epilogue::ReluPool {
                    // Where the pooled values go and how many: the whole step
                    // in a flat run, else the tiles whose second row and
                    // column are inside the plane.
                    let (at, count) = if flat {
                        (tx0, k)
                    } else if 2 * ty + 1 < oh {
                        (ty * pw + tx0, (ow / 2).saturating_sub(tx0).min(k))
                    } else {
                        (0, 0)
                    };
                    let pooled = _mm512_max_ps(
                        _mm512_max_ps(_mm512_max_ps(out[0][0], out[0][1]), out[1][0]),
                        out[1][1],
                    );
                    // SAFETY: outputs at .. at + count lie inside the
                    // ph x pw plane.
                    unsafe {
                        _mm512_mask_storeu_ps(plane.as_mut_ptr().add(at), lanes(count), pooled);
                    }
                } else {
                    for (i, [left, right]) in out.into_iter().enumerate() {
                        let yr = 2 * ty + i;
                        if yr >= oh {
                            break;
                        }
                        let count = (ow - 2 * tx0).min(2 * k);
                        // SAFETY: outputs 2tx0 .. 2tx0 + count <= ow of row yr.
                        unsafe {
                            let p = plane.as_mut_ptr().add(yr * ow + 2 * tx0);
                            let first = _mm512_permutex2var_ps(left, zip_lo, right);
                            _mm512_mask_storeu_ps(p, lanes(count), first);
                            if count > 16 {
                                let second = _mm512_permutex2var_ps(left, zip_hi, right);
                                _mm512_mask_storeu_ps(p.add(16), lanes(count - 16), second);
                            }
                        }
                    }
                }
            }};
        }
        // The steps: up to 16 tiles of a row at a time.
        let steps = (0..rows).flat_map(|ty| {
            (0..width)
                .step_by(16)
                .map(move |tx0| (ty, tx0, (width - tx0).min(16)))
        });
        if let Source::UV { u, v } = src
            && channels == 1
        {
            // One input channel: a step's 16 V vectors are loaded once and
            // reused for every output channel.
            for (ty, tx0, k) in steps {
                let mut vv = [zero; 16];
                for (xi, val) in vv.iter_mut().enumerate() {
                    // SAFETY: tiles ty*width + tx0 .. + k lie inside V.
                    *val = unsafe {
                        _mm512_maskz_loadu_ps(
                            lanes(k),
                            v.as_ptr().add(xi * tiles + ty * width + tx0),
                        )
                    };
                }
                for (o, plane) in y.chunks_exact_mut(plane_len).enumerate() {
                    let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[o]));
                    let mut mm = [zero; 16];
                    for (xi, acc) in mm.iter_mut().enumerate() {
                        *acc = _mm512_mul_ps(_mm512_set1_ps(u[xi * oc + o]), vv[xi]);
                    }
                    emit!(mm, b, plane, ty, tx0, k);
                }
            }
            return;
        }
        // Every output channel over every step, with `$fill` setting `$mm`
        // to the 16 vectors of M for tiles `$t0..` of output channel `$o`.
        macro_rules! each_block {
            (|$o:ident, $t0:ident, $mask:ident, $mm:ident| $fill:block) => {
                for (o, plane) in y.chunks_exact_mut(plane_len).enumerate() {
                    let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[o]));
                    for (ty, tx0, k) in steps.clone() {
                        let ($o, $t0, $mask) = (o, ty * width + tx0, lanes(k));
                        let mut $mm = [zero; 16];
                        $fill
                        emit!($mm, b, &mut *plane, ty, tx0, k);
                    }
                }
            };
        }
        // SAFETY (both loads): tiles t0 .. t0 + k of the sample lie inside
        // the slices, as the caller checked.
        match src {
            Source::M { m, ld, col0 } => {
                let sixteenth = m.len() / TILE_VALUES;
                each_block!(|o, t0, mask, mm| {
                    for (xi, v) in mm.iter_mut().enumerate() {
                        unsafe {
                            let p = m.as_ptr().add(o * ld + col0 + t0 + xi * sixteenth);
                            *v = _mm512_maskz_loadu_ps(mask, p);
                        }
                    }
                })
            }
            Source::UV { u, v } => each_block!(|o, t0, mask, mm| {
                // Channels outermost, so the 16 accumulators stay in registers.
                let term = |xi: usize, c: usize| unsafe {
                    let w = _mm512_set1_ps(*u.get_unchecked((xi * oc + o) * channels + c));
                    let p = v.as_ptr().add((xi * channels + c) * tiles + t0);
                    _mm512_mul_ps(w, _mm512_maskz_loadu_ps(mask, p))
                };
                for (xi, acc) in mm.iter_mut().enumerate() {
                    *acc = term(xi, 0);
                }
                for c in 1..channels {
                    for (xi, acc) in mm.iter_mut().enumerate() {
                        *acc = _mm512_add_ps(*acc, term(xi, c));
                    }
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct cross-correlation in f64: `(OC, OH, OW)` for one sample.
    fn direct(x: &[f32], w: &[f32], bias: &[f32], g: &TileGrid) -> Vec<f64> {
        let oc = bias.len();
        let mut y = vec![0.0f64; oc * g.out_h * g.out_w];
        for o in 0..oc {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut acc = f64::from(bias[o]);
                    for c in 0..g.channels {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let (iy, ix) = (oy + ki, ox + kj);
                                if iy < g.pad_h
                                    || ix < g.pad_w
                                    || iy - g.pad_h >= g.height
                                    || ix - g.pad_w >= g.width
                                {
                                    continue;
                                }
                                let xv = x[(c * g.height + iy - g.pad_h) * g.width + ix - g.pad_w];
                                let wv = w[((o * g.channels + c) * 3 + ki) * 3 + kj];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[(o * g.out_h + oy) * g.out_w + ox] = acc;
                }
            }
        }
        y
    }

    /// Relu, then 2x2 stride-2 max-pool (floor), of `(OC, OH, OW)` planes.
    fn relu_pool(y: &[f64], oc: usize, oh: usize, ow: usize) -> Vec<f64> {
        let (ph, pw) = (oh / 2, ow / 2);
        let mut out = vec![0.0; oc * ph * pw];
        for o in 0..oc {
            for py in 0..ph {
                for px in 0..pw {
                    let at = |dy: usize, dx: usize| {
                        y[(o * oh + 2 * py + dy) * ow + 2 * px + dx].max(0.0)
                    };
                    out[(o * ph + py) * pw + px] =
                        at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                }
            }
        }
        out
    }

    /// The transformed inputs of `n` samples side by side (`ld` a little
    /// wider than needed, as callers may use).
    fn inputs(x: &[f32], g: &TileGrid, n: usize) -> (Vec<f32>, usize) {
        let ld = n * g.tiles() + 3;
        let mut v = vec![f32::NAN; TILE_VALUES * g.channels * ld];
        let mut scratch = vec![f32::NAN; g.scratch_len()];
        for s in 0..n {
            let xs = &x[s * g.input_len()..][..g.input_len()];
            transform_input(xs, g, &mut v, ld, s * g.tiles(), &mut scratch);
        }
        (v, ld)
    }

    /// The whole pipeline for `n` samples, with a naive GEMM.
    fn winograd(
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        g: &TileGrid,
        n: usize,
        epilogue: Epilogue,
    ) -> Vec<f32> {
        let (c, oc) = (g.channels, bias.len());
        let mut u = vec![0.0; TILE_VALUES * oc * c];
        transform_weights(w, oc, c, &mut u);
        let (v, ld) = inputs(x, g, n);
        let mut m = vec![0.0; TILE_VALUES * oc * ld];
        for xi in 0..TILE_VALUES {
            for o in 0..oc {
                for t in 0..n * g.tiles() {
                    let mut acc = 0.0;
                    for ch in 0..c {
                        acc += u[(xi * oc + o) * c + ch] * v[(xi * c + ch) * ld + t];
                    }
                    m[(xi * oc + o) * ld + t] = acc;
                }
            }
        }
        let (h, wd) = epilogue.out_dims(g);
        let per = oc * h * wd;
        let mut y = vec![f32::NAN; n * per];
        if per == 0 {
            return y;
        }
        for (s, ys) in y.chunks_exact_mut(per).enumerate() {
            transform_output(&m, g, ld, s * g.tiles(), Some(bias), epilogue, ys);
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(40_503));
                (h >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// `(C, OC, H, W, pad_h, pad_w)`: odd and even planes, narrow and wide
    /// (more than 16 tiles a row, so the vector kernels take two steps).
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 8] = [
        (1, 1, 4, 4, 0, 0),
        (3, 5, 7, 6, 1, 1),
        (4, 2, 5, 9, 0, 2),
        (2, 3, 3, 3, 1, 0),
        (8, 4, 14, 14, 1, 1),
        (2, 2, 1, 1, 1, 1),
        (1, 3, 28, 28, 1, 1),
        (2, 2, 9, 37, 1, 0),
    ];

    #[test]
    fn matches_direct_convolution_with_every_epilogue() {
        for (c, oc, h, w, ph, pw) in SHAPES {
            let g = TileGrid::new((c, h, w), (ph, pw)).expect("non-empty");
            let n = 2;
            let x = values(n * g.input_len(), 1);
            let wt = values(oc * c * 9, 2);
            let bias = values(oc, 3);
            let y = winograd(&x, &wt, &bias, &g, n, Epilogue::Bias);
            let y_relu = winograd(&x, &wt, &bias, &g, n, Epilogue::Relu);
            let y_pool = winograd(&x, &wt, &bias, &g, n, Epilogue::ReluPool);
            let tol = 1e-5 * (1.0 + (c * 9) as f64).sqrt();
            for s in 0..n {
                let want = direct(&x[s * g.input_len()..][..g.input_len()], &wt, &bias, &g);
                let got = &y[s * want.len()..][..want.len()];
                let got_relu = &y_relu[s * want.len()..][..want.len()];
                for ((&p, &r), &q) in got.iter().zip(got_relu).zip(&want) {
                    assert!(
                        (f64::from(p) - q).abs() <= tol,
                        "{c}x{h}x{w} pad {ph},{pw}: {p} vs {q}"
                    );
                    assert_eq!(r, p.max(0.0));
                }
                let want_pool = relu_pool(&want, oc, g.out_h, g.out_w);
                let got_pool = &y_pool[s * want_pool.len()..][..want_pool.len()];
                for (&p, &q) in got_pool.iter().zip(&want_pool) {
                    assert!(
                        (f64::from(p) - q).abs() <= tol,
                        "pooled {c}x{h}x{w}: {p} vs {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn summing_channels_in_registers_matches_the_gemm_path() {
        for (c, oc, h, w, ph, pw) in SHAPES {
            let g = TileGrid::new((c, h, w), (ph, pw)).expect("non-empty");
            let x = values(g.input_len(), 4);
            let wt = values(oc * c * 9, 5);
            let bias = values(oc, 6);
            let mut u = vec![0.0; TILE_VALUES * oc * c];
            transform_weights(&wt, oc, c, &mut u);
            let mut v = vec![f32::NAN; TILE_VALUES * c * g.tiles()];
            let mut scratch = vec![0.0; g.scratch_len()];
            transform_input(&x, &g, &mut v, g.tiles(), 0, &mut scratch);
            for epilogue in [Epilogue::Bias, Epilogue::Relu, Epilogue::ReluPool] {
                let want = winograd(&x, &wt, &bias, &g, 1, epilogue);
                let mut got = vec![f32::NAN; want.len()];
                multiply_transform(&u, &v, &g, Some(&bias), epilogue, &mut got);
                for (p, q) in got.iter().zip(&want) {
                    assert!(
                        (p - q).abs() <= 1e-6 * (1.0 + q.abs()),
                        "{epilogue:?}: {p} vs {q}"
                    );
                }
            }
        }
    }

    /// The AVX-512 kernels against their portable twins, value for value
    /// (run where the CPU has AVX-512; elsewhere only the portable path exists).
    #[test]
    fn vector_kernels_match_portable() {
        if crate::simd::level() != 2 {
            return;
        }
        for (c, oc, h, w, ph, pw) in SHAPES {
            let g = TileGrid::new((c, h, w), (ph, pw)).expect("non-empty");
            let x = values(g.input_len(), 7);
            let ld = g.tiles() + 2;
            let mut v = vec![0.0; TILE_VALUES * c * ld];
            let mut v_portable = v.clone();
            let mut scratch = vec![0.0; g.scratch_len()];
            transform_input(&x, &g, &mut v, ld, 1, &mut scratch);
            transform_input_portable(&x, &g, &mut v_portable, ld, 1, &mut scratch);
            assert_eq!(v, v_portable, "input transform, {c}x{h}x{w}");
            let bias = values(oc, 8);
            let m = values(TILE_VALUES * oc * ld, 9);
            let mut u = vec![0.0; TILE_VALUES * oc * c];
            transform_weights(&values(oc * c * 9, 10), oc, c, &mut u);
            let mut v1 = vec![0.0; TILE_VALUES * c * g.tiles()];
            transform_input(&x, &g, &mut v1, g.tiles(), 0, &mut scratch);
            for epilogue in [Epilogue::Bias, Epilogue::Relu, Epilogue::ReluPool] {
                let (oh, ow) = epilogue.out_dims(&g);
                for src in [
                    Source::M { m: &m, ld, col0: 1 },
                    Source::UV { u: &u, v: &v1 },
                ] {
                    let mut y = vec![f32::NAN; oc * oh * ow];
                    let mut y_portable = y.clone();
                    // SAFETY: level 2 was checked above; the lengths are right.
                    unsafe { avx512::transform_output(src, &g, Some(&bias), epilogue, &mut y) };
                    transform_output_portable(src, &g, Some(&bias), epilogue, &mut y_portable);
                    assert_eq!(y, y_portable, "{epilogue:?}, {c}x{h}x{w}");
                }
            }
        }
    }

    /// `TEGAKI_NO_WINOGRAD` turns the paths off (checked in a child process,
    /// so this process's switch stays untouched for the other tests).
    #[test]
    fn environment_turns_winograd_off() {
        if std::env::var_os("TEGAKI_WINOGRAD_CHILD").is_some() {
            assert!(!enabled());
            set_enabled(true);
            assert!(enabled());
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "winograd::tests::environment_turns_winograd_off"])
            .env("TEGAKI_WINOGRAD_CHILD", "1")
            .env("TEGAKI_NO_WINOGRAD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    #[test]
    fn tile_grid_of_empty_outputs_is_none() {
        assert!(TileGrid::new((1, 1, 1), (0, 0)).is_none());
        assert!(TileGrid::new((1, 2, 5), (0, 0)).is_none());
        assert!(TileGrid::new((0, 5, 5), (1, 1)).is_none());
        let g = TileGrid::new((2, 14, 14), (1, 1)).expect("non-empty");
        assert_eq!((g.out_h, g.out_w, g.tiles_h, g.tiles_w), (14, 14, 7, 7));
        let g = TileGrid::new((2, 5, 6), (0, 0)).expect("non-empty");
        assert_eq!((g.out_h, g.out_w, g.tiles_h, g.tiles_w), (3, 4, 2, 2));
    }
}
