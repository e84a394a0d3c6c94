#include "quant/lowrank.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "core/error.h"
#include "kernels/cpu/quant.h"

// LAPACK (from OpenBLAS, 32-bit integers). Fortran ABI: every argument by pointer, column-major
// matrices, and a hidden length for each character argument at the end.
extern "C" {
void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda, double* s,
             double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork,
             int* iwork, int* info, size_t jobz_len);
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);
}

namespace brisk::quant {

namespace {

constexpr const char* kNames[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};

// "blk.<layer>.<short>.weight" -> (layer, short), or layer -1.
std::pair<int64_t, std::string> parse_layer_matrix(const std::string& name) {
  constexpr std::string_view kBlk = "blk.", kWeight = ".weight";
  if (name.rfind(kBlk, 0) != 0 || name.size() <= kBlk.size() + kWeight.size() ||
      name.compare(name.size() - kWeight.size(), kWeight.size(), kWeight) != 0)
    return {-1, {}};
  size_t p = kBlk.size();
  int64_t layer = 0;
  const size_t digits0 = p;
  while (p < name.size() && name[p] >= '0' && name[p] <= '9' && p - digits0 < 9)
    layer = layer * 10 + (name[p++] - '0');
  if (p == digits0 || p >= name.size() || name[p] != '.') return {-1, {}};
  std::string rest = name.substr(p + 1, name.size() - kWeight.size() - p - 1);
  for (const char* n : kNames)
    if (rest == n) return {layer, rest};
  return {-1, {}};
}

}  // namespace

std::span<const char* const> lowrank_tensor_names() {
  return kNames;
}

Svd svd(const float* w, int64_t rows, int64_t cols) {
  check(rows > 0 && cols > 0, "svd: empty matrix (", rows, " x ", cols, ")");
  check(rows < INT_MAX && cols < INT_MAX && rows * cols < (int64_t{1} << 40),
        "svd: matrix too large (", rows, " x ", cols, ")");
  const int64_t k = std::min(rows, cols);
  // Row-major W (rows, cols) is column-major W^T (cols, rows) with lda = cols. dgesdd factorises
  // W^T = U' S V'^T, so W = V' S U'^T: W's left vectors are the rows of V'^T and its right vectors
  // the columns of U'. In memory, column-major V'^T (k, rows) is row-major (rows, k) = our u, and
  // column-major U' (cols, k) is row-major (k, cols) = our vt: no transposes needed.
  std::vector<double> a(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < a.size(); ++i) {
    check(std::isfinite(w[i]), "svd: non-finite value at element ", i);
    a[i] = w[i];
  }
  Svd d;
  d.rows = rows;
  d.cols = cols;
  d.s.resize(static_cast<size_t>(k));
  d.u.resize(static_cast<size_t>(rows * k));
  d.vt.resize(static_cast<size_t>(k * cols));
  const char jobz = 'S';
  const int m = static_cast<int>(cols), n = static_cast<int>(rows), lda = m, ldu = m,
            ldvt = static_cast<int>(k);
  std::vector<int> iwork(static_cast<size_t>(8 * k));
  int info = 0, lwork = -1;
  double query = 0;
  dgesdd_(&jobz, &m, &n, a.data(), &lda, d.s.data(), d.vt.data(), &ldu, d.u.data(), &ldvt, &query,
          &lwork, iwork.data(), &info, 1);
  check(info == 0, "svd: LAPACK dgesdd workspace query failed (info ", info, ")");
  check(query < static_cast<double>(INT_MAX), "svd: matrix too large for LAPACK (", rows, " x ",
        cols, ")");
  lwork = std::max(1, static_cast<int>(query));
  std::vector<double> work(static_cast<size_t>(lwork));
  dgesdd_(&jobz, &m, &n, a.data(), &lda, d.s.data(), d.vt.data(), &ldu, d.u.data(), &ldvt,
          work.data(), &lwork, iwork.data(), &info, 1);
  if (info > 0) fail("svd: LAPACK dgesdd did not converge (", rows, " x ", cols, ")");
  check(info == 0, "svd: LAPACK dgesdd failed (info ", info, ")");
  return d;
}

double retained_energy(std::span<const double> s, int64_t r) {
  // Tail sums from the smallest value up, so that 1 - retained is accurate when it is tiny.
  double total = 0, tail = 0;
  for (size_t i = s.size(); i-- > 0;) {
    total += s[i] * s[i];
    if (static_cast<int64_t>(i) >= r) tail += s[i] * s[i];
  }
  return total > 0 ? 1.0 - tail / total : 1.0;
}

int64_t rank_for_energy(std::span<const double> s, double energy) {
  check(energy > 0 && energy <= 1, "energy must be in (0, 1], not ", energy);
  double total = 0;
  for (double v : s) total += v * v;
  if (total == 0) return 1;
  // The smallest r with tail(r) = sum_{i >= r} s_i^2 <= (1 - energy) * total.
  const double allowed = (1.0 - energy) * total;
  double tail = 0;
  int64_t r = static_cast<int64_t>(s.size());
  while (r > 1) {
    const double next = tail + s[static_cast<size_t>(r - 1)] * s[static_cast<size_t>(r - 1)];
    if (next > allowed) break;
    tail = next;
    --r;
  }
  return r;
}

LowRank truncate(const Svd& d, int64_t rank) {
  const int64_t k = static_cast<int64_t>(d.s.size());
  check(rank >= 1 && rank <= k, "low rank: rank ", rank, " out of range [1, min(", d.rows, ", ",
        d.cols, ") = ", k, "]");
  LowRank f;
  f.rows = d.rows;
  f.cols = d.cols;
  f.rank = rank;
  f.a.resize(static_cast<size_t>(rank * d.cols));
  f.b.resize(static_cast<size_t>(d.rows * rank));
  for (int64_t j = 0; j < rank; ++j) {
    const double r = std::sqrt(d.s[static_cast<size_t>(j)]);
    for (int64_t i = 0; i < d.cols; ++i)
      f.a[static_cast<size_t>(j * d.cols + i)] =
          static_cast<float>(r * d.vt[static_cast<size_t>(j * d.cols + i)]);
    for (int64_t o = 0; o < d.rows; ++o)
      f.b[static_cast<size_t>(o * rank + j)] =
          static_cast<float>(r * d.u[static_cast<size_t>(o * k + j)]);
  }
  double total = 0, tail = 0;
  for (int64_t i = k; i-- > 0;) {
    const double e = d.s[static_cast<size_t>(i)] * d.s[static_cast<size_t>(i)];
    total += e;
    if (i >= rank) tail += e;
  }
  f.energy = total > 0 ? 1.0 - tail / total : 1.0;
  f.error = std::sqrt(tail);
  f.rel_error = total > 0 ? std::sqrt(tail / total) : 0.0;
  return f;
}

LowRankReport lowrank_model(
    io::ModelFile& m, const LowRankOptions& o, ThreadPool& pool,
    const std::function<void(size_t, size_t, const std::string&)>& progress) {
  // Options.
  const bool by_rank = o.rank != 0, by_energy = o.energy != 0;
  if (by_rank == by_energy) fail("lowrank: give exactly one of a rank and an energy");
  if (by_rank && o.rank < 1) fail("lowrank: rank must be >= 1, not ", o.rank);
  if (by_energy && !(o.energy > 0 && o.energy <= 1))
    fail("lowrank: energy must be in (0, 1], not ", o.energy);
  if (o.type != DType::F16 && o.type != DType::F32)
    fail("lowrank: factor type must be f16 or f32, not ", dtype_name(o.type));
  for (const std::string& t : o.tensors)
    if (std::find_if(std::begin(kNames), std::end(kNames), [&](const char* n) { return t == n; }) ==
        std::end(kNames))
      fail("lowrank: unknown tensor '", t,
           "' (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down)");
  if (!m.find("general.architecture"))
    fail(m.path, ": missing metadata 'general.architecture' (is this a model file?)");
  if (const gguf::Value* t = m.find("general.type");
      t && t->type == gguf::ValueType::STRING && t->str == "adapter")
    fail(m.path, ": this is a LoRA adapter, not a model");

  int64_t n_layer = 0;
  for (const gguf::TensorInfo& t : m.tensors)
    if (const auto [l, s] = parse_layer_matrix(t.name); l >= 0) n_layer = std::max(n_layer, l + 1);
  for (int64_t l : o.layers)
    if (l < 0 || l >= n_layer)
      fail("lowrank: layer ", l, " out of range (", m.path, " has ", n_layer, " layers)");

  auto selected = [&](const gguf::TensorInfo& t) {
    const auto [l, s] = parse_layer_matrix(t.name);
    if (l < 0 || t.shape.size() != 2) return false;
    if (!o.layers.empty() && std::find(o.layers.begin(), o.layers.end(), l) == o.layers.end())
      return false;
    return o.tensors.empty() || std::find(o.tensors.begin(), o.tensors.end(), s) != o.tensors.end();
  };
  size_t n_sel = 0;
  for (const gguf::TensorInfo& t : m.tensors) n_sel += selected(t) ? 1 : 0;
  if (n_sel == 0)
    fail(m.path, ": no dense layer matrix matches the selection (already factorised?)");

  // The SVDs run on OpenBLAS's threads (brisk's pool only dequantises); its thread count is
  // process-wide state that training sets to 1, so it is restored afterwards.
  struct BlasThreads {
    int prev = openblas_get_num_threads();
    explicit BlasThreads(int n) { openblas_set_num_threads(n); }
    ~BlasThreads() { openblas_set_num_threads(prev); }
  } blas_threads(pool.size());
  const kernels::QuantKernels& enc = kernels::quant_kernels(o.type);
  LowRankReport rep;
  std::vector<gguf::TensorInfo> out;
  out.reserve(m.tensors.size() + n_sel);
  size_t done = 0;
  for (gguf::TensorInfo& t : m.tensors) {
    rep.params_before += static_cast<uint64_t>(t.n_elements());
    if (!selected(t)) {
      out.push_back(std::move(t));
      continue;
    }
    if (progress) progress(done, n_sel, t.name);
    ++done;
    LowRankTensorReport tr;
    tr.name = t.name;
    tr.n_in = t.shape[0];
    tr.n_out = t.shape[1];
    const int64_t k = std::min(tr.n_in, tr.n_out);
    tr.params_before = tr.params_after = static_cast<uint64_t>(tr.n_in * tr.n_out);
    auto smaller = [&](int64_t r) { return r * (tr.n_in + tr.n_out) < tr.n_in * tr.n_out; };
    auto keep = [&](std::string why) {
      tr.note = std::move(why);
      out.push_back(std::move(t));
      rep.tensors.push_back(std::move(tr));
    };
    if (by_rank && o.only_if_smaller && !smaller(std::min(o.rank, k))) {
      // Known without an SVD: skip its cost (the energy stays unknown).
      tr.rank = std::min(o.rank, k);
      tr.energy = std::numeric_limits<double>::quiet_NaN();
      keep("factors would not be smaller: r * (n_in + n_out) >= n_in * n_out");
      continue;
    }
    if (!kernels::has_quant_kernels(t.type) || !dtype_layout(t.type).storage)
      fail(m.path, ": tensor '", t.name, "' has type ", dtype_name(t.type),
           " which brisk cannot dequantise");
    // W (n_out, n_in) in f32, row by row.
    std::vector<float> w(static_cast<size_t>(tr.n_in * tr.n_out));
    const kernels::QuantKernels& dec = kernels::quant_kernels(t.type);
    const size_t rb = row_bytes(t.type, tr.n_in);
    pool.parallel_for(tr.n_out, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r)
        dec.to_float(t.data + static_cast<size_t>(r) * rb, w.data() + r * tr.n_in, tr.n_in);
    });
    Svd d;
    try {
      d = svd(w.data(), tr.n_out, tr.n_in);
    } catch (const Error& e) {
      fail(m.path, ": tensor '", t.name, "': ", e.what());
    }
    const int64_t r = by_rank ? std::min(o.rank, k) : rank_for_energy(d.s, o.energy);
    tr.rank = r;
    tr.energy = retained_energy(d.s, r);
    if (o.only_if_smaller && !smaller(r)) {
      keep("factors would not be smaller: r * (n_in + n_out) >= n_in * n_out");
      continue;
    }
    const LowRank f = truncate(d, r);
    tr.rel_error = f.rel_error;
    tr.factorised = true;
    tr.params_after = static_cast<uint64_t>(r * (tr.n_in + tr.n_out));
    auto add = [&](const std::string& suffix, const std::vector<float>& v, int64_t ne0,
                   int64_t ne1) {
      auto buf =
          std::make_shared<std::vector<uint8_t>>(row_bytes(o.type, ne0) * static_cast<size_t>(ne1));
      enc.from_float(v.data(), buf->data(), ne0 * ne1);
      gguf::TensorInfo ti;
      ti.name = t.name + suffix;
      ti.type = o.type;
      ti.shape = {ne0, ne1};
      ti.data = buf->data();
      ti.nbytes = buf->size();
      m.owned.push_back(std::move(buf));
      out.push_back(std::move(ti));
    };
    add(kLowRankASuffix, f.a, tr.n_in, r);   // A (r, n_in): ne [n_in, r]
    add(kLowRankBSuffix, f.b, r, tr.n_out);  // B (n_out, r): ne [r, n_out]
    ++rep.n_factorised;
    rep.tensors.push_back(std::move(tr));
  }
  m.tensors = std::move(out);
  for (const gguf::TensorInfo& t : m.tensors)
    rep.params_after += static_cast<uint64_t>(t.n_elements());
  if (rep.n_factorised > 0) {
    uint32_t before = 0;
    if (const gguf::Value* v = m.find(kLowRankCountKey); v && v->is_integer())
      before = static_cast<uint32_t>(std::clamp<int64_t>(v->as_int(kLowRankCountKey), 0, 1 << 30));
    m.set(kLowRankKey, gguf::Value::boolean(true));
    m.set(kLowRankCountKey, gguf::Value::u32(before + static_cast<uint32_t>(rep.n_factorised)));
  }
  return rep;
}

}  // namespace brisk::quant
