// AdderNet convolution kernels for CPU (float32), called from supernets/ops/adder.py via ctypes.
//
// Why a plain C ABI and not a torch extension: it compiles in about a second with gcc alone (no
// torch headers, no ninja), so a fresh machine builds it lazily or during `make setup`.
//
//   forward   y[n,t,p]  = bias[t] - sum_j |x[j](p) - w[t,j]|^P        (P = 1, 2 or fractional)
//   grad_X    gx[n,c,q] = sum_{tap,t} clamp(w[t,c,tap] - x[c,q], -1, 1) * g[t, p(q, tap)]
// The filter gradient sum (x - w) g is a GEMM plus a rank-1 term and is done in Python with
// torch's own convolution weight gradient (see adder.py).
//
// Two implementations, both with O(threads * channels * rows * width) extra memory: neither the
// im2col matrix of the batch nor the (Cout x K x N*Ho*Wo) tensor is ever formed.
//  * channel-vector (default when >= 3/4 of the vector lanes are used): vector lanes run over
//    output channels (forward) or input channels (input gradient); the other operand is a
//    scalar broadcast read straight from a zero-padded copy of the rows one task needs, at
//    compile-time displacements, so there is no im2col/col2im traffic.  The input-gradient
//    version needs stride 1.
//  * im2col panels (any geometry): a task im2col's <= PB output pixels of one image into
//    panels Xp[cb][j][NR] and vectorises over pixels; col2im folds the input gradient back.
//
// Numerics: no -ffast-math.  Each output is a float32 sum over taps in a fixed order; the only
// rewrites are exact ones (|d| * 1.0 as an FMA, VRANGEPS for clamp, FMA contraction of
// clamp * g + acc, which rounds once instead of twice).
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <omp.h>

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4)));  // unaligned access

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE__)
#include <immintrin.h>
#endif
// min/max as single instructions (a ?: select compiles to compare + blend).
static inline vf vmax(vf a, vf b) {
#if defined(__AVX512F__)
  return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
  return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__SSE__)
  return (vf)_mm_max_ps((__m128)a, (__m128)b);
#else
  return a > b ? a : b;
#endif
}
static inline vf vmin(vf a, vf b) {
#if defined(__AVX512F__)
  return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
  return (vf)_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__SSE__)
  return (vf)_mm_min_ps((__m128)a, (__m128)b);
#else
  return a < b ? a : b;
#endif
}

#ifndef FWD_MR
#define FWD_MR 8          // filters per forward micro-tile
#endif
#ifndef FWD_NV
#define FWD_NV 2          // vectors (of VL pixels) per micro-tile
#endif
#define NR (FWD_NV * VL)  // pixels per panel (shared by forward and backward)
#ifndef BWD_MJ
#define BWD_MJ 4          // im2col rows per backward micro-tile
#endif
#ifndef PANEL_BYTES
#define PANEL_BYTES (192 * 1024)  // target size of one thread's X block (fits L2)
#endif

// clamp(d, -1, 1).  AVX-512DQ VRANGEPS (imm 2: smaller magnitude, sign of d) does it in one
// instruction; on Zen 4 min/max share the two FP-add pipes with the subtraction, so this
// measured ~1.5x faster for the input-gradient kernel.  Same result bit for bit.
static inline vf vclamp1(vf d, vf one, vf mone) {
#if defined(__AVX512DQ__) && VL == 16
  (void)mone;
  return (vf)_mm512_range_ps((__m512)d, (__m512)one, 0x02);
#else
  return vmin(vmax(d, mone), one);
#endif
}

namespace {

// |a|^p for a >= 0 and 1 <= p <= 2 (fractional lp-norm).  exp2(p * log2(a)) with a
// polynomial log2 on [sqrt(1/2), sqrt(2)) and a degree-7 Taylor exp2 on [-1/2, 1/2];
// relative error <= ~4e-6 per term at float32 (checked against float64 in tests).
// a below FLT_MIN gives 0 exactly.
static inline vf vpow_pos(vf a, float p) {
  const vi ai = (vi)a;
  vi e = ((ai >> 23) & 0xff) - 127;
  vf m = (vf)((ai & 0x7fffff) | 0x3f800000);  // [1, 2)
  const vi big = m > 1.41421356f;              // -1 where true
  m = big ? m * 0.5f : m;
  e = e - big;
  // log2(1 + t) = t * P(t), P: degree-8 Chebyshev fit on [sqrt(1/2) - 1, sqrt(2) - 1]
  // (abs. error 2e-8; no division)
  const vf t = m - 1.0f;
  const vf l = t * (1.442695004e+00f + t * (-7.213474682e-01f + t * (4.809107535e-01f +
               t * (-3.606932681e-01f + t * (2.879032609e-01f + t * (-2.391698814e-01f +
               t * (2.160782256e-01f + t * (-2.058618803e-01f + t * 1.231096842e-01f))))))));
  vf y = p * (__builtin_convertvector(e, vf) + l);
  y = vmin(vmax(y, (vf){} - 126.0f), (vf){} + 127.0f);
  const vf n = (y + 12582912.0f) - 12582912.0f;  // round to nearest (|y| < 2^22)
  const vf f = y - n;
  const float k1 = 0.6931471805599453f, k2 = 0.2402265069591007f, k3 = 0.0555041086648216f,
              k4 = 0.0096181291076285f, k5 = 0.0013333558146428f, k6 = 0.0001540353039338f,
              k7 = 0.0000152527338040f;
  const vf q = 1.0f + f * (k1 + f * (k2 + f * (k3 + f * (k4 + f * (k5 + f * (k6 + f * k7))))));
  const vi r = (vi)q + (__builtin_convertvector(n, vi) << 23);
  return (vf)(a < 1.17549435e-38f ? (vi){} : r);
}

struct Geom {
  int64_t N, C, H, W, Cout, kh, kw, sh, sw, ph, pw, dh, dw, G, Ho, Wo;
  int64_t Cg() const { return C / G; }
  int64_t Cog() const { return Cout / G; }
  int64_t K() const { return Cg() * kh * kw; }
  int64_t P() const { return Ho * Wo; }
};

inline Geom read_geom(const int64_t* g) {
  Geom r;
  r.N = g[0]; r.C = g[1]; r.H = g[2]; r.W = g[3]; r.Cout = g[4]; r.kh = g[5]; r.kw = g[6];
  r.sh = g[7]; r.sw = g[8]; r.ph = g[9]; r.pw = g[10]; r.dh = g[11]; r.dw = g[12]; r.G = g[13];
  r.Ho = g[14]; r.Wo = g[15];
  return r;
}

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Pixels per block: a multiple of NR, X block ~PANEL_BYTES, at most the image's pixel count.
inline int64_t block_cols(const Geom& g, int64_t krows) {
  int64_t pb = (PANEL_BYTES / 4) / std::max<int64_t>(krows, 1);
  pb = std::max<int64_t>(NR, pb / NR * NR);
  return std::min(pb, round_up(g.P(), NR));
}

// im2col of pixels [p0, p0+pc) of one image/group (xg points at its first channel) into panels
// Xp[cb][j][NR] with row stride NR and panel stride krows*NR; columns >= pc and rows >= K are 0.
void im2col_panels(const Geom& g, const float* xg, int64_t p0, int64_t pc, int64_t krows,
                   float* Xp) {
  const int64_t K = g.K(), ncb = ceil_div(pc, NR), kk = g.kh * g.kw;
  const int64_t HW = g.H * g.W;
  std::memset(Xp, 0, sizeof(float) * ncb * krows * NR);
  for (int64_t j = 0; j < K; ++j) {
    const int64_t c = j / kk, ki = (j % kk) / g.kw, kj = j % g.kw;
    const float* xc = xg + c * HW;
    const int64_t offh = ki * g.dh - g.ph, offw = kj * g.dw - g.pw;
    // walk the pixels of this block row by row of the output
    int64_t p = p0, pend = p0 + pc;
    while (p < pend) {
      const int64_t oh = p / g.Wo, ow0 = p % g.Wo;
      const int64_t run = std::min(g.Wo - ow0, pend - p);
      const int64_t ih = oh * g.sh + offh;
      if (ih >= 0 && ih < g.H) {
        const float* src = xc + ih * g.W;
        // valid ow range: 0 <= ow*sw + offw < W
        int64_t lo = ow0, hi = ow0 + run;  // [lo, hi)
        // first valid ow
        int64_t ow_min = offw >= 0 ? 0 : ceil_div(-offw, g.sw);
        int64_t ow_max = (g.W - 1 - offw) >= 0 ? (g.W - 1 - offw) / g.sw + 1 : 0;  // exclusive
        int64_t a = std::max(lo, ow_min), b = std::min(hi, ow_max);
        for (int64_t ow = a; ow < b; ++ow) {
          const int64_t q = p - p0 + (ow - ow0);
          Xp[(q / NR) * krows * NR + j * NR + (q % NR)] = src[ow * g.sw + offw];
        }
      }
      p += run;
    }
  }
}

// col2im: accumulate panels dXp (same layout as im2col_panels) into gxg (one image/group).
void col2im_panels(const Geom& g, const float* dXp, int64_t p0, int64_t pc, int64_t krows,
                   float* gxg) {
  const int64_t K = g.K(), kk = g.kh * g.kw, HW = g.H * g.W;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t c = j / kk, ki = (j % kk) / g.kw, kj = j % g.kw;
    float* gc = gxg + c * HW;
    const int64_t offh = ki * g.dh - g.ph, offw = kj * g.dw - g.pw;
    int64_t p = p0, pend = p0 + pc;
    const int64_t ow_min = offw >= 0 ? 0 : ceil_div(-offw, g.sw);
    const int64_t ow_max = (g.W - 1 - offw) >= 0 ? (g.W - 1 - offw) / g.sw + 1 : 0;
    while (p < pend) {
      const int64_t oh = p / g.Wo, ow0 = p % g.Wo;
      const int64_t run = std::min(g.Wo - ow0, pend - p);
      const int64_t ih = oh * g.sh + offh;
      if (ih >= 0 && ih < g.H) {
        float* dst = gc + ih * g.W;
        int64_t a = std::max(ow0, ow_min), b = std::min(ow0 + run, ow_max);
        for (int64_t ow = a; ow < b; ++ow) {
          const int64_t q = p - p0 + (ow - ow0);
          dst[ow * g.sw + offw] += dXp[(q / NR) * krows * NR + j * NR + (q % NR)];
        }
      }
      p += run;
    }
  }
}

// Forward micro-kernel: acc[r][v] = sum_j |x[j][v] - w[j][r]|^MODE over one panel.
template <int MODE>
inline void fwd_micro(const float* __restrict wp, const float* __restrict xp, int64_t K,
                      vf acc[FWD_MR][FWD_NV], float pexp) {
  const vi absmask = (vi){} + 0x7fffffff;
#ifdef ADD_ON_FMA
  vf one = (vf){} + 1.0f;
  asm("" : "+v"(one));  // hide the 1.0 so that acc + |d| * one stays an FMA (exact: |d|*1 == |d|)
#endif
  for (int r = 0; r < FWD_MR; ++r)
    for (int v = 0; v < FWD_NV; ++v) acc[r][v] = (vf){};
  for (int64_t j = 0; j < K; ++j) {
    vf xv[FWD_NV];
    for (int v = 0; v < FWD_NV; ++v) xv[v] = *(const vf*)(xp + j * NR + v * VL);
    const float* wj = wp + j * FWD_MR;
    for (int r = 0; r < FWD_MR; ++r) {
      const float wr = wj[r];
      for (int v = 0; v < FWD_NV; ++v) {
        vf d = xv[v] - wr;
        if (MODE == 1) {
#ifdef ADD_ON_FMA
          acc[r][v] += (vf)((vi)d & absmask) * one;
#else
          acc[r][v] += (vf)((vi)d & absmask);
#endif
        } else if (MODE == 2) {
          acc[r][v] += d * d;
        } else {
          acc[r][v] += vpow_pos((vf)((vi)d & absmask), pexp);
        }
      }
    }
  }
}

// Backward (input) micro-kernel: acc[r][v] = sum_t clamp(w[t][r] - x[r][v], -1, 1) * g[t][v].
inline void bwd_micro(const float* __restrict wq, const float* __restrict xp,
                      const float* __restrict gp, int64_t T, vf acc[BWD_MJ][FWD_NV]) {
  vf xv[BWD_MJ][FWD_NV];
  for (int r = 0; r < BWD_MJ; ++r)
    for (int v = 0; v < FWD_NV; ++v) {
      xv[r][v] = *(const vf*)(xp + r * NR + v * VL);
      acc[r][v] = (vf){};
    }
  const vf one = (vf){} + 1.0f, mone = (vf){} - 1.0f;
  for (int64_t t = 0; t < T; ++t) {
    vf gv[FWD_NV];
    for (int v = 0; v < FWD_NV; ++v) gv[v] = *(const vf*)(gp + t * NR + v * VL);
    const float* wt = wq + t * BWD_MJ;
    for (int r = 0; r < BWD_MJ; ++r) {
      const float wr = wt[r];
      for (int v = 0; v < FWD_NV; ++v) {
        vf d = wr - xv[r][v];
        d = vclamp1(d, one, mone);
        acc[r][v] += d * gv[v];
      }
    }
  }
}

inline int64_t fwd_wpack_floats(const Geom& g) {
  return g.G * round_up(g.Cog(), FWD_MR) * g.K();
}
inline int64_t bwd_wpack_floats(const Geom& g) {
  return g.G * round_up(g.K(), BWD_MJ) * g.Cog();
}
inline int64_t fwd_thread_floats(const Geom& g) {
  return block_cols(g, g.K()) * g.K() + 64;
}
inline int64_t bwd_thread_floats(const Geom& g) {
  const int64_t kr = round_up(g.K(), BWD_MJ), pb = block_cols(g, kr);
  return 2 * pb * kr + pb * g.Cog() + 3 * 64;
}
inline float* align64(float* p) {
  return (float*)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

template <int MODE>
void forward_impl(const Geom& g, const float* x, const float* w, const float* bias, float* y,
                  float* work, int nthreads, float pexp) {
  const int64_t K = g.K(), Cog = g.Cog(), Cg = g.Cg(), P = g.P();
  const int64_t ntb = ceil_div(Cog, FWD_MR), pb = block_cols(g, K), npb = ceil_div(P, pb);
  // pack weights: Wp[grp][tb][j][r]
  float* Wp = align64(work);
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t tb = 0; tb < ntb; ++tb)
      for (int64_t j = 0; j < K; ++j)
        for (int r = 0; r < FWD_MR; ++r) {
          const int64_t t = tb * FWD_MR + r;
          Wp[((grp * ntb + tb) * K + j) * FWD_MR + r] = t < Cog ? w[(grp * Cog + t) * K + j] : 0.f;
        }
  float* thread_base = align64(Wp + fwd_wpack_floats(g));
  const int64_t per_thread = round_up(fwd_thread_floats(g), 16);
  const int64_t ntasks = g.N * g.G * npb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t task = 0; task < ntasks; ++task) {
    float* Xp = thread_base + (int64_t)omp_get_thread_num() * per_thread;
    const int64_t n = task / (g.G * npb), grp = (task / npb) % g.G, b = task % npb;
    const int64_t p0 = b * pb, pc = std::min(pb, P - p0), ncb = ceil_div(pc, NR);
    im2col_panels(g, x + (n * g.C + grp * Cg) * g.H * g.W, p0, pc, K, Xp);
    for (int64_t tb = 0; tb < ntb; ++tb) {
      const float* wpan = Wp + (grp * ntb + tb) * K * FWD_MR;
      for (int64_t cb = 0; cb < ncb; ++cb) {
        vf acc[FWD_MR][FWD_NV];
        fwd_micro<MODE>(wpan, Xp + cb * K * NR, K, acc, pexp);
        const int64_t q0 = cb * NR, nv = std::min<int64_t>(NR, pc - q0);
        for (int r = 0; r < FWD_MR; ++r) {
          const int64_t t = tb * FWD_MR + r;
          if (t >= Cog) break;
          const int64_t oc = grp * Cog + t;
          const float bv = bias ? bias[oc] : 0.f;
          float* dst = y + (n * g.Cout + oc) * P + p0 + q0;
          if (nv == NR) {
            for (int v = 0; v < FWD_NV; ++v) *(vfu*)(dst + v * VL) = bv - acc[r][v];
          } else {
            float tmp[NR] __attribute__((aligned(64)));
            for (int v = 0; v < FWD_NV; ++v) *(vf*)(tmp + v * VL) = bv - acc[r][v];
            for (int64_t i = 0; i < nv; ++i) dst[i] = tmp[i];
          }
        }
      }
    }
  }
}

void backward_input_impl(const Geom& g, const float* x, const float* w, const float* gy,
                         float* gx, float* work, int nthreads) {
  const int64_t K = g.K(), Cog = g.Cog(), Cg = g.Cg(), P = g.P();
  const int64_t kr = round_up(K, BWD_MJ), njb = kr / BWD_MJ, pb = block_cols(g, kr);
  const int64_t npb = ceil_div(P, pb);
  // pack weights: Wq[grp][jb][t][r] = w[grp*Cog + t][jb*MJ + r]
  float* Wq = align64(work);
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t jb = 0; jb < njb; ++jb)
      for (int64_t t = 0; t < Cog; ++t)
        for (int r = 0; r < BWD_MJ; ++r) {
          const int64_t j = jb * BWD_MJ + r;
          Wq[((grp * njb + jb) * Cog + t) * BWD_MJ + r] = j < K ? w[(grp * Cog + t) * K + j] : 0.f;
        }
  float* thread_base = align64(Wq + bwd_wpack_floats(g));
  const int64_t per_thread = round_up(bwd_thread_floats(g), 16);
  const int64_t ntasks = g.N * g.G;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t task = 0; task < ntasks; ++task) {
    float* Xp = thread_base + (int64_t)omp_get_thread_num() * per_thread;
    float* dXp = align64(Xp + pb * kr);
    float* Gp = align64(dXp + pb * kr);
    const int64_t n = task / g.G, grp = task % g.G;
    const float* xg = x + (n * g.C + grp * Cg) * g.H * g.W;
    float* gxg = gx + (n * g.C + grp * Cg) * g.H * g.W;
    std::memset(gxg, 0, sizeof(float) * Cg * g.H * g.W);
    for (int64_t b = 0; b < npb; ++b) {
      const int64_t p0 = b * pb, pc = std::min(pb, P - p0), ncb = ceil_div(pc, NR);
      im2col_panels(g, xg, p0, pc, kr, Xp);
      // pack grad_out: Gp[cb][t][NR]
      for (int64_t cb = 0; cb < ncb; ++cb) {
        const int64_t q0 = cb * NR, nv = std::min<int64_t>(NR, pc - q0);
        for (int64_t t = 0; t < Cog; ++t) {
          const float* src = gy + (n * g.Cout + grp * Cog + t) * P + p0 + q0;
          float* dst = Gp + (cb * Cog + t) * NR;
          int64_t i = 0;
          for (; i < nv; ++i) dst[i] = src[i];
          for (; i < NR; ++i) dst[i] = 0.f;
        }
      }
      for (int64_t cb = 0; cb < ncb; ++cb) {
        for (int64_t jb = 0; jb < njb; ++jb) {
          vf acc[BWD_MJ][FWD_NV];
          bwd_micro(Wq + (grp * njb + jb) * Cog * BWD_MJ, Xp + (cb * kr + jb * BWD_MJ) * NR,
                    Gp + cb * Cog * NR, Cog, acc);
          float* dst = dXp + (cb * kr + jb * BWD_MJ) * NR;
          for (int r = 0; r < BWD_MJ; ++r)
            for (int v = 0; v < FWD_NV; ++v) *(vf*)(dst + r * NR + v * VL) = acc[r][v];
        }
      }
      col2im_panels(g, dXp, p0, pc, kr, gxg);
    }
  }
}


// ---------------------------------------------------------------------------------------------
// Channel-vector kernels (no im2col).  Lanes are output channels (forward) or input channels
// (input gradient); the other operand is a scalar broadcast straight from a zero-padded copy of
// the rows a task needs, at compile-time displacements m*stride for MR consecutive pixels of one
// row.  This removes the im2col/col2im traffic, which costs as much as the arithmetic when
// Cout is small.
// ---------------------------------------------------------------------------------------------

static inline vf hide(vf v) {
  asm("" : "+v"(v));  // opaque to the optimiser: keeps `acc + |d| * one` an FMA (exact, |d|*1 == |d|)
  return v;
}

// acc[m][v] = sum_j |x_j(m) - w[j][v]|^MODE,  x_j(m) = xb[offs[j] + m * sw]
template <int MODE, int MR, int NV, int SW>
inline void fwd_cv_micro(const float* __restrict wpan, const float* __restrict xb,
                         const int64_t* __restrict offs, int64_t K, int64_t sw_rt,
                         vf acc[MR][NV], float pexp) {
  const int64_t sw = SW > 0 ? SW : sw_rt;
  const vi absmask = (vi){} + 0x7fffffff;
  const vf one = hide((vf){} + 1.0f);
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = (vf){};
  for (int64_t j = 0; j < K; ++j) {
    const float* xj = xb + offs[j];
    vf wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = *(const vf*)(wpan + (j * NV + v) * VL);
    for (int m = 0; m < MR; ++m) {
      const float xs = xj[m * sw];
      for (int v = 0; v < NV; ++v) {
        const vf d = wv[v] - xs;
        if (MODE == 1) acc[m][v] += (vf)((vi)d & absmask) * one;
        else if (MODE == 2) acc[m][v] += d * d;
        else acc[m][v] += vpow_pos((vf)((vi)d & absmask), pexp);
      }
    }
  }
}

struct FwdCvPlan {
  int64_t NVL, ntb, RB, nrb, rows_in, Wpb, S, MRu;
};

template <int MR, int NV>
inline FwdCvPlan fwd_cv_plan(const Geom& g, int nthreads) {
  FwdCvPlan pl;
  pl.NVL = NV * VL;
  pl.ntb = ceil_div(g.Cog(), pl.NVL);
  pl.MRu = MR;
  const int64_t tiles = ceil_div(g.Wo, MR);
  pl.Wpb = std::max(g.W + 2 * g.pw, (tiles * MR - 1) * g.sw + (g.kw - 1) * g.dw + 1);
  // output rows per task: x block <= PANEL_BYTES, and enough tasks for the threads
  const int64_t row_bytes = g.Cg() * g.sh * pl.Wpb * 4;
  int64_t rb = std::max<int64_t>(1, (PANEL_BYTES * 2) / std::max<int64_t>(row_bytes, 1));
  rb = std::min(rb, g.Ho);
  const int64_t want = 2 * (int64_t)nthreads;
  while (rb > 1 && g.N * g.G * ceil_div(g.Ho, rb) < want) rb = (rb + 1) / 2;
  pl.RB = rb;
  pl.nrb = ceil_div(g.Ho, rb);
  pl.rows_in = (rb - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  pl.S = pl.rows_in * pl.Wpb;
  return pl;
}

template <int MR, int NV>
inline int64_t fwd_cv_workspace(const Geom& g, int nthreads) {
  const FwdCvPlan pl = fwd_cv_plan<MR, NV>(g, nthreads);
  const int64_t shared = g.G * pl.ntb * g.K() * pl.NVL + g.K() * 2 + 64;  // Wp + offs (int64)
  const int64_t per = round_up(g.Cg() * pl.S + MR * pl.NVL + 64, 16);
  return shared + 64 + nthreads * per + 64;
}

template <int MODE, int MR, int NV, int SW>
void fwd_cv_impl(const Geom& g, const float* x, const float* w, const float* bias, float* y,
                 float* work, int nthreads, float pexp) {
  const FwdCvPlan pl = fwd_cv_plan<MR, NV>(g, nthreads);
  const int64_t K = g.K(), Cog = g.Cog(), Cg = g.Cg(), NVL = pl.NVL, kk = g.kh * g.kw;
  float* Wp = align64(work);  // [grp][tb][j][NVL]
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t tb = 0; tb < pl.ntb; ++tb)
      for (int64_t j = 0; j < K; ++j)
        for (int64_t l = 0; l < NVL; ++l) {
          const int64_t t = tb * NVL + l;
          Wp[((grp * pl.ntb + tb) * K + j) * NVL + l] = t < Cog ? w[(grp * Cog + t) * K + j] : 0.f;
        }
  int64_t* offs = (int64_t*)(Wp + g.G * pl.ntb * K * NVL);
  for (int64_t j = 0; j < K; ++j) {
    const int64_t c = j / kk, ki = (j % kk) / g.kw, kj = j % g.kw;
    offs[j] = c * pl.S + ki * g.dh * pl.Wpb + kj * g.dw;
  }
  float* thread_base = align64((float*)(offs + K) + 16);
  const int64_t per = round_up(Cg * pl.S + MR * NVL + 64, 16);
  const int64_t ntasks = g.N * g.G * pl.nrb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t task = 0; task < ntasks; ++task) {
    float* xbuf = thread_base + (int64_t)omp_get_thread_num() * per;
    float* tmp = align64(xbuf + Cg * pl.S);
    const int64_t n = task / (g.G * pl.nrb), grp = (task / pl.nrb) % g.G, rb = task % pl.nrb;
    const int64_t oh0 = rb * pl.RB, oh1 = std::min(g.Ho, oh0 + pl.RB);
    const int64_t ih_start = oh0 * g.sh - g.ph;
    const float* xg = x + (n * g.C + grp * Cg) * g.H * g.W;
    // zero-padded copy of the input rows this block reads
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t rr = 0; rr < pl.rows_in; ++rr) {
        float* dst = xbuf + c * pl.S + rr * pl.Wpb;
        const int64_t ih = ih_start + rr;
        if (ih < 0 || ih >= g.H) {
          std::memset(dst, 0, sizeof(float) * pl.Wpb);
          continue;
        }
        std::memset(dst, 0, sizeof(float) * g.pw);
        std::memcpy(dst + g.pw, xg + (c * g.H + ih) * g.W, sizeof(float) * g.W);
        std::memset(dst + g.pw + g.W, 0, sizeof(float) * (pl.Wpb - g.pw - g.W));
      }
    for (int64_t tb = 0; tb < pl.ntb; ++tb) {
      const float* wpan = Wp + (grp * pl.ntb + tb) * K * NVL;
      const int64_t tcount = std::min(NVL, Cog - tb * NVL);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const float* xrow = xbuf + (oh - oh0) * g.sh * pl.Wpb;
        for (int64_t ow0 = 0; ow0 < g.Wo; ow0 += MR) {
          vf acc[MR][NV];
          fwd_cv_micro<MODE, MR, NV, SW>(wpan, xrow + ow0 * g.sw, offs, K, g.sw, acc, pexp);
          for (int m = 0; m < MR; ++m)
            for (int v = 0; v < NV; ++v) *(vf*)(tmp + m * NVL + v * VL) = acc[m][v];
          const int64_t mc = std::min<int64_t>(MR, g.Wo - ow0);
          for (int64_t l = 0; l < tcount; ++l) {
            const int64_t oc = grp * Cog + tb * NVL + l;
            const float bv = bias ? bias[oc] : 0.f;
            float* dst = y + ((n * g.Cout + oc) * g.Ho + oh) * g.Wo + ow0;
            for (int64_t m = 0; m < mc; ++m) dst[m] = bv - tmp[m * NVL + l];
          }
        }
      }
    }
  }
}

// Input gradient, stride 1:
//   gx[c, ih, iw] = sum_{tap, t} clamp(w[t, c, tap] - x[c, ih, iw], -1, 1)
//                                * g[t, ih + ph - ki*dh, iw + pw - kj*dw]
// Lanes are input channels c; x[c, pixel] stays fixed over the whole (tap, t) reduction.
template <int MR, int NV>
inline void bwd_cv_micro(const float* __restrict wq, const float* __restrict xt,
                         const float* __restrict gbase, const int64_t* __restrict goffs,
                         int64_t Q, int64_t xstride, vf acc[MR][NV]) {
  const vf one = (vf){} + 1.0f, mone = (vf){} - 1.0f;
  vf xv[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) {
      xv[m][v] = *(const vf*)(xt + m * xstride + v * VL);
      acc[m][v] = (vf){};
    }
  for (int64_t q = 0; q < Q; ++q) {
    const float* gq = gbase + goffs[q];
    vf wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = *(const vf*)(wq + (q * NV + v) * VL);
    for (int m = 0; m < MR; ++m) {
      const float gs = gq[m];
      for (int v = 0; v < NV; ++v) {
        acc[m][v] += vclamp1(wv[v] - xv[m][v], one, mone) * gs;
      }
    }
  }
}

struct BwdCvPlan {
  int64_t NVL, ncb, Cgp, RB, nrb, Wx, Wgb, nR, Sg;
};

template <int MR, int NV>
inline BwdCvPlan bwd_cv_plan(const Geom& g, int nthreads) {
  BwdCvPlan pl;
  pl.NVL = NV * VL;
  pl.ncb = ceil_div(g.Cg(), pl.NVL);
  pl.Cgp = pl.ncb * pl.NVL;
  pl.Wx = ceil_div(g.W, MR) * MR;
  pl.Wgb = pl.Wx + (g.kw - 1) * g.dw;
  const int64_t row_bytes = (g.Cog() * pl.Wgb + pl.Wx * pl.Cgp) * 4;
  int64_t rb = std::max<int64_t>(1, (PANEL_BYTES * 2) / std::max<int64_t>(row_bytes, 1));
  rb = std::min(rb, g.H);
  const int64_t want = 2 * (int64_t)nthreads;
  while (rb > 1 && g.N * g.G * ceil_div(g.H, rb) < want) rb = (rb + 1) / 2;
  pl.RB = rb;
  pl.nrb = ceil_div(g.H, rb);
  pl.nR = rb + (g.kh - 1) * g.dh;
  pl.Sg = pl.nR * pl.Wgb;
  return pl;
}

template <int MR, int NV>
inline int64_t bwd_cv_per_thread(const Geom& g, const BwdCvPlan& pl) {
  return round_up(g.Cog() * pl.Sg + 16 + pl.RB * pl.Wx * pl.Cgp + 16 + MR * pl.NVL + 16 +
                      2 * g.kh * g.kw * g.Cog() + 64, 16);
}

template <int MR, int NV>
inline int64_t bwd_cv_workspace(const Geom& g, int nthreads) {
  const BwdCvPlan pl = bwd_cv_plan<MR, NV>(g, nthreads);
  const int64_t shared = g.G * pl.ncb * g.kh * g.kw * g.Cog() * pl.NVL + 64;
  return shared + 64 + nthreads * bwd_cv_per_thread<MR, NV>(g, pl) + 64;
}

template <int MR, int NV>
void bwd_cv_impl(const Geom& g, const float* x, const float* w, const float* gy, float* gx,
                 float* work, int nthreads) {
  const BwdCvPlan pl = bwd_cv_plan<MR, NV>(g, nthreads);
  const int64_t Cog = g.Cog(), Cg = g.Cg(), NVL = pl.NVL, kk = g.kh * g.kw, Q = kk * Cog;
  float* Wq = align64(work);  // [grp][cb][tap][t][NVL]
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t cb = 0; cb < pl.ncb; ++cb)
      for (int64_t tap = 0; tap < kk; ++tap)
        for (int64_t t = 0; t < Cog; ++t)
          for (int64_t l = 0; l < NVL; ++l) {
            const int64_t c = cb * NVL + l;
            Wq[(((grp * pl.ncb + cb) * kk + tap) * Cog + t) * NVL + l] =
                c < Cg ? w[((grp * Cog + t) * Cg + c) * kk + tap] : 0.f;
          }
  float* thread_base = align64(Wq + g.G * pl.ncb * Q * NVL);
  const int64_t per = bwd_cv_per_thread<MR, NV>(g, pl);
  const int64_t offh = (g.kh - 1) * g.dh - g.ph, offw = (g.kw - 1) * g.dw - g.pw;
  const int64_t ntasks = g.N * g.G * pl.nrb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t task = 0; task < ntasks; ++task) {
    float* gb = thread_base + (int64_t)omp_get_thread_num() * per;  // [t][nR][Wgb]
    float* xt = align64(gb + Cog * pl.Sg);                           // [rr][Wx][Cgp]
    float* tmp = align64(xt + pl.RB * pl.Wx * pl.Cgp);
    int64_t* goffs = (int64_t*)align64(tmp + MR * NVL);
    const int64_t n = task / (g.G * pl.nrb), grp = (task / pl.nrb) % g.G, rb = task % pl.nrb;
    const int64_t ih0 = rb * pl.RB, ih1 = std::min(g.H, ih0 + pl.RB);
    const float* xg = x + (n * g.C + grp * Cg) * g.H * g.W;
    const float* gyg = gy + (n * g.Cout + grp * Cog) * g.Ho * g.Wo;
    // g rows R = ih0 + rr hold g[t, R - offh, col - offw] (zero outside)
    for (int64_t t = 0; t < Cog; ++t)
      for (int64_t rr = 0; rr < pl.nR; ++rr) {
        float* dst = gb + t * pl.Sg + rr * pl.Wgb;
        const int64_t oh = ih0 + rr - offh;
        std::memset(dst, 0, sizeof(float) * pl.Wgb);
        if (oh < 0 || oh >= g.Ho) continue;
        const float* src = gyg + (t * g.Ho + oh) * g.Wo;
        const int64_t a = std::max<int64_t>(0, offw), b = std::min(pl.Wgb, g.Wo + offw);
        for (int64_t col = a; col < b; ++col) dst[col] = src[col - offw];
      }
    // channel-last copy of x rows: xt[rr][iw][c]
    std::memset(xt, 0, sizeof(float) * (ih1 - ih0) * pl.Wx * pl.Cgp);
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t rr = 0; rr < ih1 - ih0; ++rr) {
        const float* src = xg + (c * g.H + ih0 + rr) * g.W;
        float* dst = xt + rr * pl.Wx * pl.Cgp + c;
        for (int64_t iw = 0; iw < g.W; ++iw) dst[iw * pl.Cgp] = src[iw];
      }
    for (int64_t tap = 0; tap < kk; ++tap) {
      const int64_t ki = tap / g.kw, kj = tap % g.kw;
      for (int64_t t = 0; t < Cog; ++t)
        goffs[tap * Cog + t] = t * pl.Sg + (g.kh - 1 - ki) * g.dh * pl.Wgb + (g.kw - 1 - kj) * g.dw;
    }
    for (int64_t cb = 0; cb < pl.ncb; ++cb) {
      const float* wq = Wq + (grp * pl.ncb + cb) * Q * NVL;
      const int64_t ccount = std::min(NVL, Cg - cb * NVL);
      for (int64_t ih = ih0; ih < ih1; ++ih)
        for (int64_t iw0 = 0; iw0 < g.W; iw0 += MR) {
          vf acc[MR][NV];
          bwd_cv_micro<MR, NV>(wq, xt + ((ih - ih0) * pl.Wx + iw0) * pl.Cgp + cb * NVL,
                               gb + (ih - ih0) * pl.Wgb + iw0, goffs, Q, pl.Cgp, acc);
          for (int m = 0; m < MR; ++m)
            for (int v = 0; v < NV; ++v) *(vf*)(tmp + m * NVL + v * VL) = acc[m][v];
          const int64_t mc = std::min<int64_t>(MR, g.W - iw0);
          for (int64_t l = 0; l < ccount; ++l) {
            float* dst = gx + ((n * g.C + grp * Cg + cb * NVL + l) * g.H + ih) * g.W + iw0;
            for (int64_t m = 0; m < mc; ++m) dst[m] = tmp[m * NVL + l];
          }
        }
    }
  }
}

#ifndef CV_MR1
#define CV_MR1 16   // forward: pixels per tile for wide rows
#endif
#ifndef CV_MR2
#define CV_MR2 8    // forward: pixels per tile for short rows
#endif
#ifndef BCV_MR1
#define BCV_MR1 8
#endif
#ifndef BCV_MR2
#define BCV_MR2 4
#endif

inline bool use_two_vectors(int64_t channels) { return channels > VL; }
// The channel-vector kernels need enough channels to fill most lanes.
inline bool fwd_cv_ok(const Geom& g) { return g.Cog() * 4 >= VL * 3; }
inline bool bwd_cv_ok(const Geom& g) { return g.sh == 1 && g.sw == 1 && g.Cg() * 4 >= VL * 3; }

template <int MODE, int MR, int NV>
void fwd_cv_dispatch(const Geom& g, const float* x, const float* w, const float* b, float* y,
                     float* work, int nt, float pexp) {
  if (g.sw == 1) fwd_cv_impl<MODE, MR, NV, 1>(g, x, w, b, y, work, nt, pexp);
  else if (g.sw == 2) fwd_cv_impl<MODE, MR, NV, 2>(g, x, w, b, y, work, nt, pexp);
  else fwd_cv_impl<MODE, MR, NV, 0>(g, x, w, b, y, work, nt, pexp);
}

// One channel vector per tile measured faster than two on Zen 4 (fewer live accumulators per
// broadcast); 16 pixels per tile unless rows are short (8x8 maps), where 8 avoids idle lanes.
inline bool fwd_cv_wide(const Geom& g) { return g.Wo % 16 == 0 || g.Wo >= 24; }

template <int MODE>
void forward_any(const Geom& g, const float* x, const float* w, const float* b, float* y,
                 float* work, int nt, float pexp, int path) {
  if (path == 2 && MODE == 3) {
    // fractional p: the pow polynomial needs ~20 registers; a 4-pixel tile avoids spills
    fwd_cv_dispatch<MODE, 4, 1>(g, x, w, b, y, work, nt, pexp);
  } else if (path == 2) {
    if (fwd_cv_wide(g)) fwd_cv_dispatch<MODE, CV_MR1, 1>(g, x, w, b, y, work, nt, pexp);
    else fwd_cv_dispatch<MODE, CV_MR2, 1>(g, x, w, b, y, work, nt, pexp);
  } else {
    forward_impl<MODE>(g, x, w, b, y, work, nt, pexp);
  }
}

}  // namespace

extern "C" {

// path: 0 = automatic, 1 = im2col panels (any geometry), 2 = channel-vector (if applicable).
static int fwd_path(const Geom& g, int path) {
  if (path == 1) return 1;
  if (path == 2) return 2;
  return fwd_cv_ok(g) ? 2 : 1;
}
static int bwd_path(const Geom& g, int path) {
  if (path == 1) return 1;
  if (path == 2) return bwd_cv_ok(g) || g.sh == 1 ? 2 : 1;
  return bwd_cv_ok(g) ? 2 : 1;
}

// Floats of workspace for `nthreads` threads (plus alignment slack).
int64_t adder_forward_workspace(const int64_t* geom, int nthreads, int path) {
  const Geom g = read_geom(geom);
  if (fwd_path(g, path) == 2)  // enough for whichever tile forward_any picks
    return std::max({fwd_cv_workspace<CV_MR1, 1>(g, nthreads), fwd_cv_workspace<CV_MR2, 1>(g, nthreads),
                     fwd_cv_workspace<4, 1>(g, nthreads)});
  return fwd_wpack_floats(g) + 64 + nthreads * round_up(fwd_thread_floats(g), 16) + 64;
}

int64_t adder_backward_input_workspace(const int64_t* geom, int nthreads, int path) {
  const Geom g = read_geom(geom);
  if (bwd_path(g, path) == 2 && g.sh == 1 && g.sw == 1)
    return use_two_vectors(g.Cg()) ? bwd_cv_workspace<BCV_MR2, 2>(g, nthreads)
                                   : bwd_cv_workspace<BCV_MR1, 1>(g, nthreads);
  return bwd_wpack_floats(g) + 64 + nthreads * round_up(bwd_thread_floats(g), 16) + 64;
}

// y = bias - sum |x - w|^p.  p == 1 and p == 2 are exact float32 kernels; other p in (1, 2)
// use vpow_pos.  Returns 0 on success.
int adder_forward(const float* x, const float* w, const float* bias, float* y, const int64_t* geom,
                  float p, float* work, int nthreads, int path) {
  const Geom g = read_geom(geom);
  if (!(p >= 1.0f && p <= 2.0f)) return 1;
  const int fp = fwd_path(g, path);
  if (p == 1.0f) forward_any<1>(g, x, w, bias, y, work, nthreads, p, fp);
  else if (p == 2.0f) forward_any<2>(g, x, w, bias, y, work, nthreads, p, fp);
  else forward_any<3>(g, x, w, bias, y, work, nthreads, p, fp);
  return 0;
}

// gx = col2im(sum_t clamp(w - x, -1, 1) * gy); gx is fully overwritten.
int adder_backward_input(const float* x, const float* w, const float* gy, float* gx,
                         const int64_t* geom, float* work, int nthreads, int path) {
  const Geom g = read_geom(geom);
  if (bwd_path(g, path) == 2 && g.sh == 1 && g.sw == 1) {
    if (use_two_vectors(g.Cg())) bwd_cv_impl<BCV_MR2, 2>(g, x, w, gy, gx, work, nthreads);
    else bwd_cv_impl<BCV_MR1, 1>(g, x, w, gy, gx, work, nthreads);
    return 0;
  }
  backward_input_impl(g, x, w, gy, gx, work, nthreads);
  return 0;
}

int adder_kernel_abi_version() { return 3; }
int adder_kernel_vector_lanes() { return VL; }

}  // extern "C"
