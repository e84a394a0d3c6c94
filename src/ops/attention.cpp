#include "ops/attention.h"

#include <algorithm>
#include <atomic>

#include "core/error.h"

namespace brisk::ops {
namespace {

// Rows (query tokens x GQA group) per tile: enough that each K/V tile loaded serves many rows, few
// enough that the transposed queries (head_dim x rows floats) and the running outputs stay in
// L1/L2.
constexpr int64_t kTargetRows = 64;
// Flash-decoding: the shortest key chunk worth a partial result (its merge costs ~one pass over
// rows x head_dim, and each chunk re-reads the tile's queries).
constexpr int64_t kMinChunkKeys = 256;
// Work items per thread below which the key range is split: fewer leave threads idle or unbalanced.
constexpr int64_t kItemsPerThread = 4;
constexpr size_t kAlign = 16;  // floats (64 bytes)

size_t align_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

struct Plan {
  int64_t q_tile;    // query tokens per tile
  int64_t n_tiles;   // ceil(T / q_tile)
  int64_t chunks;    // key-range chunks per (tile, KV head); 1 = no split, final outputs directly
  int64_t max_rows;  // q_tile * group
};

Plan make_plan(int64_t T, int64_t pos0, const AttentionShape& s, int threads,
               const AttentionOptions& opt) {
  const int64_t group = s.n_head / s.n_head_kv;
  Plan p{};
  p.q_tile = opt.q_tile > 0 ? opt.q_tile : std::max<int64_t>(1, kTargetRows / group);
  p.q_tile = std::min({p.q_tile, T, std::max<int64_t>(1, kernels::kAttnMaxRows / group)});
  p.n_tiles = (T + p.q_tile - 1) / p.q_tile;
  p.max_rows = p.q_tile * group;
  const int64_t base = p.n_tiles * s.n_head_kv;
  if (opt.kv_chunks > 0) {
    p.chunks = opt.kv_chunks;
  } else if (threads == 1 || (p.n_tiles == 1 && base % threads == 0) ||
             base >= kItemsPerThread * threads) {
    // One thread; or equal-sized items that divide evenly; or enough items for the dynamic
    // schedule to balance the causal tiles' unequal costs.
    p.chunks = 1;
  } else {
    // Few (tile, head) items and a long context: split the keys (flash-decoding).
    int64_t span = pos0 + T;
    if (s.sliding_window > 0) span = std::min<int64_t>(span, s.sliding_window + p.q_tile - 1);
    const int64_t want = (kItemsPerThread * threads + base - 1) / base;
    p.chunks = std::max<int64_t>(1, std::min(want, span / kMinChunkKeys));
  }
  return p;
}

// The tile of query tile ti and KV head hk of one sequence (q is (T, n_head, head_dim) at
// positions pos0..): everything but the key range and the output.
kernels::AttnTile make_tile(const float* q, int64_t T, int64_t pos0, const Plan& plan,
                            const AttentionShape& s, int64_t ti, int hk) {
  const int64_t group = s.n_head / s.n_head_kv;
  const int64_t q_stride = static_cast<int64_t>(s.n_head) * s.head_dim;
  const int64_t t0 = ti * plan.q_tile;
  kernels::AttnTile a;
  a.q = q + t0 * q_stride + hk * group * s.head_dim;
  a.q_stride = q_stride;
  a.n_q = std::min(plan.q_tile, T - t0);
  a.pos = pos0 + t0;
  a.group = static_cast<int>(group);
  a.head_dim = s.head_dim;
  a.kv_head = hk;
  a.window = s.sliding_window;
  a.scale = s.scale;
  return a;
}

// One call's shared state; threads take work items from `next`.
struct Job {
  const float* q;
  int64_t T, pos0;
  const KvView& k;
  const KvView& v;
  const AttentionShape& s;
  float* out;
  kernels::AttnTileFn tile_fn;
  Plan plan;
  int group;
  int64_t d, q_stride;
  size_t work, part_group;  // floats per thread work area, per (tile, KV head) partials
  float* base;              // thread work areas
  float* parts;             // partials (chunks > 1)
  std::atomic<int64_t> next;

  // Partials of (tile ti, KV head hk): o [chunks][rows][d], m [chunks][rows], l [chunks][rows].
  float* part_o(int64_t ti, int64_t hk) const {
    return parts + part_group * static_cast<size_t>(ti * s.n_head_kv + hk);
  }

  // Items are handed out dynamically, latest query tiles first: under the causal mask they see
  // the most keys, and starting the longest jobs first keeps the threads' finishing times close.
  void run_items(int tid) {
    float* w = base + work * static_cast<size_t>(tid);
    const int64_t per_tile = s.n_head_kv * plan.chunks;
    const int64_t n_items = plan.n_tiles * per_tile;
    for (;;) {
      const int64_t item = next.fetch_add(1, std::memory_order_relaxed);
      if (item >= n_items) break;
      const int64_t ti = plan.n_tiles - 1 - item / per_tile;
      const int hk = static_cast<int>(item % per_tile / plan.chunks);
      const int64_t c = item % plan.chunks;
      const int64_t t0 = ti * plan.q_tile;
      kernels::AttnTile a = make_tile(q, T, pos0, plan, s, ti, hk);
      const int64_t n_q = a.n_q;
      const int64_t hi = a.pos + n_q;
      if (plan.chunks == 1) {
        a.key_begin = 0;
        a.key_end = hi;
        a.out = out + t0 * q_stride + static_cast<int64_t>(hk) * group * d;
        a.out_stride = q_stride;
      } else {
        // Equal chunks of the keys this tile can see, on key-tile boundaries; trailing chunks
        // may be empty (their partial is m = -inf, l = 0).
        const int64_t lo =
            s.sliding_window > 0 ? std::max<int64_t>(0, a.pos - s.sliding_window + 1) : 0;
        int64_t len = (hi - lo + plan.chunks - 1) / plan.chunks;
        len = (len + kernels::kAttnKeyTile - 1) / kernels::kAttnKeyTile * kernels::kAttnKeyTile;
        a.key_begin = std::min(hi, lo + c * len);
        a.key_end = std::min(hi, a.key_begin + len);
        const int64_t rows = n_q * group;
        float* g = part_o(ti, hk);
        a.out = g + c * rows * d;
        a.out_stride = group * d;
        a.m_out = g + plan.chunks * rows * d + c * rows;
        a.l_out = g + plan.chunks * rows * (d + 1) + c * rows;
      }
      tile_fn(a, k, v, w);
    }
  }

  // (tile, KV head) groups [b, e): merge their partials into out.
  void merge(int64_t b, int64_t e) const {
    for (int64_t gi = b; gi < e; ++gi) {
      const int64_t ti = gi / s.n_head_kv, hk = gi % s.n_head_kv;
      const int64_t t0 = ti * plan.q_tile;
      const int64_t rows = std::min(plan.q_tile, T - t0) * group;
      const float* g = part_o(ti, hk);
      kernels::attention_merge(static_cast<int>(plan.chunks), g, g + plan.chunks * rows * d,
                               g + plan.chunks * rows * (d + 1), rows, group, s.head_dim,
                               out + t0 * q_stride + hk * group * d, q_stride);
    }
  }
};

void check_shape(const AttentionShape& s) {
  check(s.n_head > 0 && s.n_head_kv > 0 && s.n_head % s.n_head_kv == 0, "attention: n_head ",
        s.n_head, " is not a positive multiple of n_head_kv ", s.n_head_kv);
  check(s.head_dim >= 1 && s.head_dim <= kernels::kAttnMaxHeadDim, "attention: head_dim ",
        s.head_dim, " outside [1, ", kernels::kAttnMaxHeadDim, "]");
  check(s.n_head / s.n_head_kv <= kernels::kAttnMaxRows, "attention: GQA group ",
        s.n_head / s.n_head_kv, " larger than ", kernels::kAttnMaxRows);
  // The vector kernels address a tile's query rows with int32 element offsets.
  check(static_cast<int64_t>(s.n_head) * s.head_dim * kernels::kAttnMaxRows < (int64_t{1} << 31),
        "attention: ", s.n_head, " heads of ", s.head_dim, " are too many");
}

void check_seq(int64_t T, int64_t pos0, const KvView& k, const KvView& v, const AttentionShape& s) {
  check(T >= 0 && pos0 >= 0 && pos0 + T <= kernels::kAttnMaxPositions, "attention: positions [",
        pos0, ", ", pos0 + T, ") outside [0, ", kernels::kAttnMaxPositions, ")");
  for (const KvView* kv : {&k, &v}) {
    check((kv->type == DType::F32 || kv->type == DType::F16 || kv->type == DType::Q8_0) &&
              kv->base && kv->block_tokens > 0 &&
              kv->token_stride >= static_cast<int64_t>(s.n_head_kv) * s.head_dim,
          "attention: K/V view must be f32, f16 or q8_0 with block_tokens > 0 and token_stride >= ",
          s.n_head_kv * s.head_dim);
    check(kv->type != DType::Q8_0 ||
              (s.head_dim % 32 == 0 && kv->token_stride % 32 == 0 && kv->block_stride % 32 == 0),
          "attention: a q8_0 K/V cache needs head_dim and strides that are multiples of 32");
  }
}

}  // namespace

void attention(const float* q, int64_t T, int64_t pos0, const KvView& k, const KvView& v,
               const AttentionShape& s, float* out, std::vector<float>& scratch, ThreadPool& pool,
               const AttentionOptions& opt) {
  check_shape(s);
  check_seq(T, pos0, k, v, s);
  if (T == 0) return;

  const kernels::Isa isa = opt.isa ? *opt.isa : kernels::active_isa_kind();
  const kernels::AttnTileFn tile_fn = kernels::attention_tile_fn_for(isa, s.head_dim);
  check(tile_fn != nullptr, "attention: ", kernels::isa_name(isa), " is not supported here");

  const int threads = pool.size();
  const Plan plan = make_plan(T, pos0, s, threads, opt);
  const int group = s.n_head / s.n_head_kv;
  const int64_t d = s.head_dim;
  const int64_t q_stride = static_cast<int64_t>(s.n_head) * d;

  // Scratch: one work area per thread, then (when split) the partials of every item:
  // per (tile, KV head) `chunks` parts of o [rows][d], then m [chunks][rows], l [chunks][rows].
  const size_t work = align_up(kernels::attention_work_floats(plan.max_rows, s.head_dim));
  const size_t part_group =
      plan.chunks > 1 ? align_up(static_cast<size_t>(plan.chunks * plan.max_rows * (d + 2))) : 0;
  const int64_t n_groups = plan.n_tiles * s.n_head_kv;
  const size_t need = kAlign + work * threads + part_group * static_cast<size_t>(n_groups);
  if (scratch.size() < need) scratch.resize(need);
  float* base = scratch.data();
  base += (kAlign - reinterpret_cast<uintptr_t>(base) / sizeof(float) % kAlign) % kAlign;
  float* parts = base + work * threads;

  Job job{q,     T, pos0,     k,    v,          s,    out,   tile_fn, plan,
          group, d, q_stride, work, part_group, base, parts, {0}};
  // The lambdas capture one pointer, which std::function stores without allocating.
  pool.parallel_for(threads, [j = &job](int64_t, int64_t, int tid) { j->run_items(tid); });
  if (plan.chunks == 1) return;
  pool.parallel_for(plan.n_tiles * s.n_head_kv,
                    [j = &job](int64_t b, int64_t e, int) { j->merge(b, e); });
}

void attention_batch(std::span<const AttnSeq> seqs, const AttentionShape& s,
                     std::vector<float>& scratch, std::vector<int64_t>& items, ThreadPool& pool) {
  check_shape(s);
  for (const AttnSeq& a : seqs) check_seq(a.T, a.pos0, a.k, a.v, s);
  const int threads = pool.size();
  // A sequence whose own plan splits its keys (a long context with few work items) runs alone,
  // through attention(); every other one joins the shared pass, where its tiles are exactly the
  // ones attention() would run for it alone. So the result for a sequence never depends on the
  // rest of the batch (batch invariance), only the scheduling does.
  // items[i] = first shared work item of sequence i (items[n] = total; 0 items when alone).
  items.resize(seqs.size() + 1);
  int64_t total = 0, max_rows = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    items[i] = total;
    if (seqs[i].T == 0) continue;
    const Plan p = make_plan(seqs[i].T, seqs[i].pos0, s, threads, {});
    if (p.chunks > 1) continue;
    total += p.n_tiles * s.n_head_kv;
    max_rows = std::max(max_rows, p.max_rows);
  }
  items[seqs.size()] = total;
  for (size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i].T > 0 && items[i + 1] == items[i]) {
      const AttnSeq& a = seqs[i];
      attention(a.q, a.T, a.pos0, a.k, a.v, s, a.out, scratch, pool);
    }
  if (total == 0) return;
  const kernels::AttnTileFn tile_fn = kernels::attention_tile_fn(s.head_dim);
  const int group = s.n_head / s.n_head_kv;
  const int64_t d = s.head_dim;
  const int64_t q_stride = static_cast<int64_t>(s.n_head) * d;
  const size_t work = align_up(kernels::attention_work_floats(max_rows, s.head_dim));
  const size_t need = kAlign + work * static_cast<size_t>(threads);
  if (scratch.size() < need) scratch.resize(need);
  float* base = scratch.data();
  base += (kAlign - reinterpret_cast<uintptr_t>(base) / sizeof(float) % kAlign) % kAlign;

  std::atomic<int64_t> next{0};
  struct Ctx {
    std::span<const AttnSeq> seqs;
    const std::vector<int64_t>& items;
    const AttentionShape& s;
    kernels::AttnTileFn tile_fn;
    int group, threads;
    int64_t d, q_stride, total;
    size_t work;
    float* base;
    std::atomic<int64_t>& next;
    // The tile of shared item `item`, with its sequence.
    kernels::AttnTile tile_of(int64_t item, const AttnSeq** seq) const {
      const size_t si = static_cast<size_t>(std::upper_bound(items.begin(), items.end() - 1, item) -
                                            items.begin() - 1);
      const AttnSeq& q = seqs[si];
      const Plan plan = make_plan(q.T, q.pos0, s, threads, {});
      const int64_t local = item - items[si];
      const int64_t ti = plan.n_tiles - 1 - local / s.n_head_kv;
      const int hk = static_cast<int>(local % s.n_head_kv);
      const int64_t t0 = ti * plan.q_tile;
      kernels::AttnTile a = make_tile(q.q, q.T, q.pos0, plan, s, ti, hk);
      a.key_begin = 0;
      a.key_end = a.pos + a.n_q;
      a.out = q.out + t0 * q_stride + static_cast<int64_t>(hk) * group * d;
      a.out_stride = q_stride;
      *seq = &q;
      return a;
    }
    void run(int tid) const {
      float* w = base + work * static_cast<size_t>(tid);
      // Each thread claims its next item before computing the current one and hands it to the
      // kernel as a prefetch hint: the kernel prefetches one key tile ahead, and past its own last
      // key that is the next item's first keys (decoding items are only a few tiles, and would
      // otherwise each start on cold K/V).
      // The tile of the item in hand is built once, when it is claimed.
      int64_t item = next.fetch_add(1, std::memory_order_relaxed);
      const AttnSeq* q = nullptr;
      kernels::AttnTile a;
      if (item < total) a = tile_of(item, &q);
      while (item < total) {
        const int64_t after = next.fetch_add(1, std::memory_order_relaxed);
        const AttnSeq* nq = nullptr;
        kernels::AttnTile na;
        if (after < total) {
          na = tile_of(after, &nq);
          a.next = &na;
          a.next_k = &nq->k;
          a.next_v = &nq->v;
        }
        tile_fn(a, q->k, q->v, w);
        item = after;
        a = na;
        q = nq;
      }
    }
  } ctx{seqs, items, s, tile_fn, group, threads, d, q_stride, total, work, base, next};
  pool.parallel_for(threads, [c = &ctx](int64_t, int64_t, int tid) { c->run(tid); });
}

}  // namespace brisk::ops
