// Linear layers: packed int8 GEMM where the active ISA has a kernel for the weight type
// (kernels/cpu/gemm.h), else one vec_dot per (row, token) over row-major weights.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"
#include "ops/ops.h"

namespace brisk::ops {

namespace {

constexpr int64_t kRowTile = 16;  // rows per tile in the vec_dot path
// Smallest share of packed row groups a thread claims: the decode tiles read up to 4 groups at once
// (kernels' kStreams), and a shorter run would fall back to fewer streams.
constexpr int64_t kGroupGrain = 4;

// The rms_norm scale of one row, computed as ggml does (mean square accumulated in double).
float rms_scale(const kernels::VecOps& vo, const float* x, int64_t n, float eps) {
  return 1.0f / std::sqrt(static_cast<float>(vo.sum_sq(x, n) / static_cast<double>(n)) + eps);
}

// Row t of x (n floats each), optionally RMS-normalised, converted to `type` at dst + t * rb. With
// a norm, the row is normalised 256 elements at a time into a stack buffer and converted from
// there, so the normalised row is never stored.
void convert_row(const float* x, int64_t t, int64_t n, const RmsNorm& norm,
                 const kernels::QuantKernels& qk, uint8_t* dst, size_t rb) {
  const float* xr = x + t * n;
  uint8_t* d = dst + static_cast<size_t>(t) * rb;
  if (!norm.weight) {
    qk.from_float(xr, d, n);
    return;
  }
  const kernels::VecOps& vo = kernels::vec_ops();
  const float scale = rms_scale(vo, xr, n, norm.eps);
  alignas(64) float tmp[256];
  // 256 is a multiple of every block size (1, 32, 256), so each chunk is whole blocks.
  for (int64_t i = 0; i < n; i += 256) {
    const int64_t c = std::min<int64_t>(256, n - i);
    vo.scale_mul(xr + i, scale, norm.weight + i, tmp, c);
    qk.from_float(tmp, d + row_bytes(qk.type, i), c);
  }
}

// T rows of x converted by convert_row, split over the pool (one row runs on the caller).
void convert_rows(const float* x, int64_t T, int64_t n, const RmsNorm& norm, DType type,
                  uint8_t* dst, size_t rb, ThreadPool& pool) {
  const kernels::QuantKernels& qk = kernels::quant_kernels(type);
  pool.parallel_for(T, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) convert_row(x, t, n, norm, qk, dst, rb);
  });
}

int64_t n_groups(const WeightView& w) {
  return (w.n_out + w.packed->rows - 1) / w.packed->rows;
}

// Quantised activations and per-kernel side data for packed targets sharing one act type.
struct PackedAct {
  const uint8_t* act;
  size_t act_stride;
};

kernels::GemmArgs gemm_args(const WeightView& w, const PackedAct& pa, const uint8_t* side,
                            size_t side_stride, int64_t T, int64_t g0, int64_t ng, float* out,
                            int64_t ldo, bool accumulate = false) {
  const kernels::PackedGemm& pg = *w.packed;
  kernels::GemmArgs a;
  a.w = w.packed_data + static_cast<size_t>(g0) * pg.group_bytes(w.n_in);
  a.n_groups = ng;
  a.n_in = w.n_in;
  a.act = pa.act;
  a.act_stride = pa.act_stride;
  a.side = side;
  a.side_stride = side_stride;
  a.T = T;
  a.out = out;
  a.ldo = ldo;
  a.n_rows = std::min(w.n_out - g0 * pg.rows, ng * pg.rows);
  a.accumulate = accumulate;
  return a;
}

// The vec_dot path for one target: activations converted to the weight type's dot type, tiles of
// kRowTile rows against every token so that each weight row is read once per call.
void linear_rows(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
                 bool accumulate, LinearScratch& scratch, ThreadPool& pool) {
  const kernels::QuantKernels& k = kernels::quant_kernels(w.type);
  const size_t w_row = row_bytes(w.type, w.n_in);
  const size_t a_row = row_bytes(k.vec_dot_type, w.n_in);
  const uint8_t* wdata = static_cast<const uint8_t*>(w.data);
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  if (k.vec_dot_type != DType::F32) {
    scratch.act.resize(a_row * static_cast<size_t>(T));
    convert_rows(x, T, w.n_in, RmsNorm{}, k.vec_dot_type, scratch.act.data(), a_row, pool);
    act = scratch.act.data();
  }
  pool.parallel_for(w.n_out, [&](int64_t b, int64_t e, int) {
    for (int64_t r0 = b; r0 < e; r0 += kRowTile) {
      const int64_t r1 = std::min(e, r0 + kRowTile);
      for (int64_t t = 0; t < T; ++t) {
        const uint8_t* a = act + static_cast<size_t>(t) * a_row;
        float* o = out + t * w.n_out;
        for (int64_t r = r0; r < r1; ++r) {
          const float v = k.vec_dot(w.n_in, wdata + static_cast<size_t>(r) * w_row, a) +
                          (bias ? bias[r] : 0.0f);
          o[r] = accumulate ? o[r] + v : v;
        }
      }
    }
  });
}

// Converts x (normalised if norm.weight) to `act_type` rows in scratch.act and computes the side
// data of each distinct packed kernel among `kernels` into scratch.side; side_of[i] is the offset
// of kernel i's side rows.
PackedAct prepare_packed(const float* x, int64_t T, int64_t n_in, const RmsNorm& norm,
                         DType act_type, std::span<const kernels::PackedGemm* const> kernels,
                         size_t* side_off, size_t* side_stride, LinearScratch& scratch,
                         ThreadPool& pool) {
  const size_t rb = row_bytes(act_type, n_in);
  scratch.act.resize(rb * static_cast<size_t>(T));
  size_t total = 0;
  for (size_t i = 0; i < kernels.size(); ++i) {
    side_stride[i] = kernels[i]->side_bytes(n_in);
    side_off[i] = total;
    total += side_stride[i] * static_cast<size_t>(T);
  }
  scratch.side.resize(total);
  uint8_t* act = scratch.act.data();
  uint8_t* side = scratch.side.data();
  const kernels::QuantKernels& qk = kernels::quant_kernels(act_type);
  // Conversion and side data of a row in one pass over the pool (one synchronisation, not two;
  // a single row runs on the caller, as parallel_for does for n == 1).
  pool.parallel_for(T, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      convert_row(x, t, n_in, norm, qk, act, rb);
      for (size_t i = 0; i < kernels.size(); ++i)
        kernels[i]->prep(act + static_cast<size_t>(t) * rb, n_in,
                         side + side_off[i] + static_cast<size_t>(t) * side_stride[i]);
    }
  });
  return PackedAct{act, rb};
}

void add_bias_rows(float* out, int64_t T, int64_t ldo, const float* bias, int64_t r0, int64_t n) {
  const kernels::VecOps& vo = kernels::vec_ops();
  for (int64_t t = 0; t < T; ++t) vo.add(out + t * ldo + r0, bias + r0, n);
}

}  // namespace

size_t packed_size(const WeightView& w) {
  const kernels::PackedGemm* pg = kernels::packed_gemm(w.type);
  if (!pg) return 0;
  const size_t groups = static_cast<size_t>((w.n_out + pg->rows - 1) / pg->rows);
  return (pg->group_bytes(w.n_in) * groups + 63) / 64 * 64;
}

namespace {
// Packs groups [0, groups) of w, group g going to dst + g * stride.
void pack_groups(const WeightView& w, const kernels::PackedGemm& pg, uint8_t* dst, size_t stride,
                 ThreadPool& pool) {
  const int64_t groups = (w.n_out + pg.rows - 1) / pg.rows;
  const size_t rb = row_bytes(w.type, w.n_in);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  pool.parallel_for(groups, [&](int64_t b, int64_t e, int) {
    for (int64_t g = b; g < e; ++g) {
      const int64_t r0 = g * pg.rows;
      pg.pack(src + static_cast<size_t>(r0) * rb, w.n_in, std::min<int64_t>(pg.rows, w.n_out - r0),
              dst + static_cast<size_t>(g) * stride);
    }
  });
}
}  // namespace

void pack_weight_into(WeightView& w, uint8_t* dst, ThreadPool& pool) {
  const kernels::PackedGemm* pg = kernels::packed_gemm(w.type);
  check(pg != nullptr, "pack: no packed kernel for ", w.name, " (", dtype_name(w.type), ")");
  pack_groups(w, *pg, dst, pg->group_bytes(w.n_in), pool);
  w.packed = pg;
  w.packed_data = dst;
}

HugeBuffer pack_weight(WeightView& w, ThreadPool& pool) {
  const size_t n = packed_size(w);
  if (n == 0) return HugeBuffer();
  HugeBuffer buf(n);
  pack_weight_into(w, buf.data(), pool);
  return buf;
}

size_t gate_up_packed_size(const WeightView& gate, const WeightView& up) {
  if (gate.type != up.type || gate.n_in != up.n_in || gate.n_out != up.n_out) return 0;
  return packed_size(gate) + packed_size(up);
}

WeightView pack_gate_up_into(const WeightView& gate, const WeightView& up, uint8_t* dst,
                             ThreadPool& pool) {
  check(gate_up_packed_size(gate, up) > 0, "pack: ", gate.name, " and ", up.name,
        " cannot be packed together");
  const kernels::PackedGemm* pg = kernels::packed_gemm(gate.type);
  const size_t gb = pg->group_bytes(gate.n_in);
  pack_groups(gate, *pg, dst, 2 * gb, pool);
  pack_groups(up, *pg, dst + gb, 2 * gb, pool);
  WeightView v = gate;
  v.name = "ffn_gate_up";
  v.n_out = 2 * ((gate.n_out + pg->rows - 1) / pg->rows) * pg->rows;
  v.data = nullptr;  // no row-major form: only the packed path reads it
  v.packed = pg;
  v.packed_data = dst;
  return v;
}

void linear_multi(const float* x, int64_t T, const RmsNorm& norm,
                  std::span<const LinearTarget> targets, LinearScratch& scratch, ThreadPool& pool) {
  check(!targets.empty() && T > 0, "linear: empty call");
  const int64_t n_in = targets[0].w->n_in;
  for (const LinearTarget& t : targets)
    check(t.w->n_in == n_in, "linear: ", t.w->name, " has rows of ", t.w->n_in, ", expected ",
          n_in);

  // Packed targets sharing the first packed target's activation type run as one work list.
  constexpr size_t kMax = 8;
  check(targets.size() <= kMax, "linear: too many targets");
  const kernels::PackedGemm* first = nullptr;
  bool in_list[kMax] = {};
  size_t n_list = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    const kernels::PackedGemm* pg = targets[i].w->packed;
    if (!pg) continue;
    if (!first) first = pg;
    if (pg->act_type == first->act_type) {
      in_list[i] = true;
      ++n_list;
    }
  }

  RmsNorm nrm = norm;
  if (nrm.weight && n_list != targets.size()) {
    // Some target needs f32 (or another dot type): normalise once into scratch.h for all.
    scratch.h.resize(static_cast<size_t>(T * n_in));
    rms_norm(x, nrm.weight, T, n_in, nrm.eps, scratch.h.data());
    x = scratch.h.data();
    nrm = RmsNorm{};
  }

  if (n_list > 0) {
    // Distinct kernels (side data differs per weight type even with one act type).
    const kernels::PackedGemm* kern[kMax];
    size_t n_kern = 0, kern_of[kMax] = {};
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!in_list[i]) continue;
      size_t k = 0;
      while (k < n_kern && kern[k] != targets[i].w->packed) ++k;
      if (k == n_kern) kern[n_kern++] = targets[i].w->packed;
      kern_of[i] = k;
    }
    size_t side_off[kMax], side_stride[kMax];
    const PackedAct pa = prepare_packed(x, T, n_in, nrm, first->act_type, std::span(kern, n_kern),
                                        side_off, side_stride, scratch, pool);
    int64_t offs[kMax + 1] = {};
    for (size_t i = 0; i < targets.size(); ++i)
      offs[i + 1] = offs[i] + (in_list[i] ? n_groups(*targets[i].w) : 0);
    const uint8_t* side = scratch.side.data();
    pool.parallel_for(
        offs[targets.size()],
        [&](int64_t b, int64_t e, int) {
          for (size_t i = 0; i < targets.size(); ++i) {
            if (!in_list[i]) continue;
            const int64_t g0 = std::max(b, offs[i]) - offs[i],
                          g1 = std::min(e, offs[i + 1]) - offs[i];
            if (g0 >= g1) continue;
            const LinearTarget& tg = targets[i];
            const int64_t rows = tg.w->packed->rows;
            const kernels::GemmArgs a =
                gemm_args(*tg.w, pa, side + side_off[kern_of[i]], side_stride[kern_of[i]], T, g0,
                          g1 - g0, tg.out + g0 * rows, tg.w->n_out, tg.accumulate);
            tg.w->packed->gemm(a);
            if (tg.bias) add_bias_rows(tg.out, T, tg.w->n_out, tg.bias, g0 * rows, a.n_rows);
          }
        },
        kGroupGrain);
  }
  for (size_t i = 0; i < targets.size(); ++i)
    if (!in_list[i])
      linear_rows(x, T, *targets[i].w, targets[i].bias, targets[i].out, targets[i].accumulate,
                  scratch, pool);
}

void linear(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
            LinearScratch& scratch, ThreadPool& pool) {
  const LinearTarget t{&w, bias, out};
  linear_multi(x, T, RmsNorm{}, std::span(&t, 1), scratch, pool);
}

void linear_add(const float* x, int64_t T, const WeightView& w, float* out, LinearScratch& scratch,
                ThreadPool& pool) {
  const LinearTarget t{&w, nullptr, out, true};
  linear_multi(x, T, RmsNorm{}, std::span(&t, 1), scratch, pool);
}

void swiglu_hidden(const float* x, int64_t T, const RmsNorm& norm, const WeightView& gate,
                   const WeightView& up, const WeightView& gate_up, float* out,
                   LinearScratch& scratch, ThreadPool& pool, const float* gate_add,
                   const float* up_add) {
  check(gate.n_out == up.n_out && gate.n_in == up.n_in, "swiglu: ", gate.name, " and ", up.name,
        " differ in shape");
  const int64_t n_ff = gate.n_out;
  const kernels::VecOps& vo = kernels::vec_ops();
  if (!gate_up.packed) {
    // Unfused: gate into out, up into scratch.tile, then out = silu(out) * tile.
    scratch.tile.resize(static_cast<size_t>(T * n_ff));
    const LinearTarget tg[2] = {{&gate, nullptr, out}, {&up, nullptr, scratch.tile.data()}};
    linear_multi(x, T, norm, tg, scratch, pool);
    if (gate_add) vo.add(out, gate_add, T * n_ff);
    if (up_add) vo.add(scratch.tile.data(), up_add, T * n_ff);
    vo.silu_mul(out, scratch.tile.data(), out, T * n_ff);
    return;
  }
  const kernels::PackedGemm* pg = gate_up.packed;
  size_t side_off[1], side_stride[1];
  const PackedAct pa = prepare_packed(x, T, gate_up.n_in, norm, pg->act_type, std::span(&pg, 1),
                                      side_off, side_stride, scratch, pool);
  const int64_t rows = pg->rows, pairs = gate_up.n_out / (2 * rows);
  // Group pairs per step: long runs while few tokens share the weights (decoding streams them),
  // short ones for prompts so that the (T, 2 * step * rows) tile stays in L2.
  const int64_t step = std::clamp<int64_t>(4096 / (T * rows), 2, 32);
  const size_t per_thread = static_cast<size_t>(T * 2 * step * rows);
  scratch.tile.resize(per_thread * static_cast<size_t>(pool.size()));
  const uint8_t* side = scratch.side.data();
  pool.parallel_for(
      pairs,
      [&](int64_t b, int64_t e, int tid) {
        float* tile = scratch.tile.data() + per_thread * static_cast<size_t>(tid);
        for (int64_t p0 = b; p0 < e; p0 += step) {
          const int64_t np = std::min(step, e - p0), ldo = 2 * np * rows;
          // Row groups 2p (gate) and 2p + 1 (up) of the fused matrix: tile row block 2i is gate
          // group p0 + i, block 2i + 1 its up group.
          kernels::GemmArgs a =
              gemm_args(gate_up, pa, side, side_stride[0], T, 2 * p0, 2 * np, tile, ldo);
          a.n_rows = ldo;
          pg->gemm(a);
          for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < np; ++i) {
              const int64_t r0 = (p0 + i) * rows;
              const int64_t n = std::min(rows, n_ff - r0);
              float* gt = tile + t * ldo + 2 * i * rows;
              if (gate_add) vo.add(gt, gate_add + t * n_ff + r0, n);
              if (up_add) vo.add(gt + rows, up_add + t * n_ff + r0, n);
              vo.silu_mul(gt, gt + rows, out + t * n_ff + r0, n);
            }
        }
      },
      kGroupGrain / 2);
}

void get_row(const WeightView& w, int64_t row, float* out) {
  check(row >= 0 && row < w.n_out, "token id ", row, " out of range for ", w.name, " (", w.n_out,
        " rows)");
  const kernels::QuantKernels& k = kernels::quant_kernels(w.type);
  const size_t w_row = row_bytes(w.type, w.n_in);
  k.to_float(static_cast<const uint8_t*>(w.data) + static_cast<size_t>(row) * w_row, out, w.n_in);
}

void rms_norm(const float* x, const float* weight, int64_t T, int64_t n, float eps, float* out) {
  const kernels::VecOps& vo = kernels::vec_ops();
  for (int64_t t = 0; t < T; ++t)
    vo.scale_mul(x + t * n, rms_scale(vo, x + t * n, n, eps), weight, out + t * n, n);
}

void swiglu(float* gate, const float* up, int64_t n_total) {
  kernels::vec_ops().silu_mul(gate, up, gate, n_total);
}

void add_inplace(float* y, const float* x, int64_t n) {
  kernels::vec_ops().add(y, x, n);
}

}  // namespace brisk::ops
