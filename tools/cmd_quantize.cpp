// brisk imatrix / brisk quantize: post-training quantisation (issue 6).
//   brisk imatrix -m MODEL -f CALIB -o FILE       mean squared activations per input column
//   brisk quantize IN OUT --type T [--method rtn|gptq|awq] [--imatrix FILE] [--calib TEXT]
// The calibration methods run the model's f32 forward over the calibration text (quant/calib.h);
// they need a llama-architecture model without biases (what brisk trains).
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "calib_common.h"
#include "cli.h"
#include "core/error.h"
#include "quant/awq.h"
#include "quant/imatrix.h"
#include "quant/methods.h"
#include "quant/quantize_model.h"

namespace brisk::cli {

void add_imatrix_command(CLI::App& app) {
  auto a = std::make_shared<CalibArgs>();
  auto out = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand(
      "imatrix", "Importance matrix: mean squared activation per input column of every matrix");
  c->add_option("-m,--model", a->model, "Model (default: brisk's embedded model)");
  c->add_option("-f,--file", a->calib, "Calibration text")->required();
  c->add_option("-o,--output", *out, "Output file (GGUF)")->required();
  add_calib_options(c, *a);
  c->callback([a, out] {
    Calibration cal = prepare_calibration(model_or_default(a->model), *a);
    quant::ImatrixCollector col;
    run_calibration_pass(cal, col, *a, "imatrix");
    quant::Imatrix im = col.take(a->calib);
    quant::write_imatrix(im, *out);
    std::fprintf(stderr, "imatrix: %zu matrices over %llu tokens -> %s\n", im.values.size(),
                 static_cast<unsigned long long>(im.tokens), out->c_str());
  });
}

void add_quantize_command(CLI::App& app) {
  struct Args {
    std::string in, out, type, method = "rtn", imatrix;
    bool keep_output_f16 = false, json = false, act_order = false;
    int awq_grid = 20;
    double damp = 0.01;
    CalibArgs cal;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c =
      app.add_subcommand("quantize", "Quantise a model's weights (RTN, imatrix, GPTQ, AWQ)");
  c->add_option("input", a->in, "Model file (any format brisk loads)")->required();
  c->add_option("output", a->out, "Output GGUF")->required();
  c->add_option("--type", a->type,
                "Storage type or recipe: q8_0, q6_K, q5_K_m, q4_K_m, q4_K, q4_0, q5_0, ...")
      ->required();
  c->add_option("--method", a->method, "rtn, gptq or awq")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "gptq", "awq"}));
  c->add_option("--imatrix", a->imatrix, "Importance matrix from brisk imatrix (rtn and awq)");
  c->add_flag("--keep-output-f16", a->keep_output_f16, "Keep the output matrix in F16");
  c->add_option("--gptq-damp", a->damp, "GPTQ: dampening, fraction of mean diag(H)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_flag("--act-order", a->act_order, "GPTQ: quantise columns in decreasing diag(H) order");
  c->add_option("--awq-grid", a->awq_grid, "AWQ: steps of the alpha grid in [0, 1]")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  c->add_flag("--json", a->json, "One JSON summary object on stdout");
  c->add_option("--calib", a->cal.calib, "Calibration text (gptq, awq)");
  add_calib_options(c, a->cal);
  c->callback([a] {
    const auto t0 = std::chrono::steady_clock::now();
    const std::optional<quant::Recipe> recipe = quant::parse_recipe(a->type);
    if (!recipe) fail("unknown --type '", a->type, "' (a storage type or q4_K_m / q5_K_m)");
    const bool calibrated = a->method != "rtn";
    if (calibrated && a->cal.calib.empty())
      fail("--method ", a->method, " needs calibration text (--calib FILE)");
    if (!a->imatrix.empty() && a->method == "gptq")
      fail("--imatrix is for rtn and awq (GPTQ uses the full Hessian of the calibration inputs)");
    io::ModelFile m = io::load_model_file(a->in);
    if (m.tensors.empty()) fail(a->in, ": no tensors");
    quant::Imatrix im;
    quant::QuantizeOptions qo;
    qo.recipe = *recipe;
    qo.keep_output_f16 = a->keep_output_f16;
    if (!a->imatrix.empty()) {
      im = quant::read_imatrix(a->imatrix);
      qo.imatrix = &im;
    }
    ThreadPool pool(a->cal.threads);
    auto type_of = [&m, &qo](const std::string& name) {
      const gguf::TensorInfo* t = m.find_tensor(name);
      check(t != nullptr, "quantize: the model has no tensor ", name);
      return quant::target_type(m, *t, qo);
    };
    std::set<std::string> done;
    nlohmann::ordered_json groups = nlohmann::json::array();
    double calib_loss = 0;
    if (calibrated) {
      Calibration cal = prepare_calibration(a->in, a->cal);
      if (a->method == "gptq") {
        quant::GptqOptions go;
        go.damp = a->damp;
        go.act_order = a->act_order;
        quant::GptqProcessor p(type_of, go, pool);
        calib_loss = run_calibration_pass(cal, p, a->cal, "gptq");
        for (auto& [name, r] : p.results()) {
          quant::replace_tensor(m, name, r.type, std::move(r.bytes));
          done.insert(name);
        }
        // Norms and the embeddings are unchanged by GPTQ; the matrices GPTQ did not see (the
        // embeddings / output) are quantised by round-to-nearest below.
      } else {
        quant::AwqProcessor p(type_of, a->awq_grid, 4096, pool);
        calib_loss = run_calibration_pass(cal, p, a->cal, "awq");
        quant::CalibModel cm{cal.model.shape, cal.layout, cal.model.params};
        p.apply(cm);
        quant::store_params(m, cal.layout, cal.model.params);
        for (const auto& g : p.log())
          groups.push_back({{"group", g.group},
                            {"alpha", g.alpha},
                            {"err_rtn", g.err_rtn},
                            {"err", g.err_best}});
        if (!a->json)
          for (const auto& g : p.log())
            std::fprintf(stderr, "awq: %-16s alpha %.2f  error %.4g -> %.4g scaled -> %.4g%s\n",
                         g.group.c_str(), g.alpha, g.err_rtn, g.err_scaled, g.err_best,
                         g.clipped ? " clipped" : "");
      }
    }
    const quant::QuantizeReport rep =
        quant::quantize_model(m, qo, pool, done, [](size_t i, size_t n, const std::string& name) {
          progress_line("quantize", static_cast<int64_t>(i), static_cast<int64_t>(n), name);
        });
    if (rep.n_fallback) std::fprintf(stderr, "quantize: fallbacks: %s\n", rep.fallbacks.c_str());
    m.set("general.file_type", gguf::Value::u32(recipe->file_type()));
    m.set("general.quantized_by", gguf::Value::string("brisk quantize --method " + a->method));
    io::write_gguf(m, a->out);
    size_t bytes = 0, weights = 0;
    for (const gguf::TensorInfo& t : m.tensors) {
      bytes += t.nbytes;
      weights += static_cast<size_t>(t.n_elements());
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double bpw = 8.0 * static_cast<double>(bytes) / static_cast<double>(weights);
    if (a->json) {
      nlohmann::ordered_json j = {
          {"input", a->in},        {"output", a->out},
          {"type", recipe->name},  {"method", a->method},
          {"imatrix", a->imatrix}, {"tensors_quantized", rep.n_quantized + done.size()},
          {"tensor_bytes", bytes}, {"bits_per_weight", bpw},
          {"seconds", secs}};
      if (calibrated) j["calibration_loss"] = calib_loss;
      if (!groups.empty()) j["awq_groups"] = groups;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::fprintf(stderr, "quantize: wrote %s: %s (%s), %.2f bits per weight, %.1f MB, %.1f s\n",
                   a->out.c_str(), recipe->name.c_str(), a->method.c_str(), bpw,
                   static_cast<double>(bytes) / 1e6, secs);
    }
  });
}

void add_prune_command(CLI::App& app) {
  struct Args {
    std::string in, out, method = "magnitude", pattern, type = "f16";
    double sparsity = 0.5, damp = 0.01;
    bool json = false;
    CalibArgs cal;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "prune", "Prune weight matrices (magnitude, Wanda, SparseGPT; unstructured or N:M)");
  c->add_option("input", a->in, "Model file (any format brisk loads; llama architecture)")
      ->required();
  c->add_option("output", a->out, "Output GGUF (zeros stored)")->required();
  c->add_option("--method", a->method, "magnitude, wanda or sparsegpt")
      ->capture_default_str()
      ->check(CLI::IsMember({"magnitude", "wanda", "sparsegpt"}));
  c->add_option("--sparsity", a->sparsity, "Fraction of zeros per matrix (unstructured)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.99));
  c->add_option("--pattern", a->pattern, "N:M semi-structured instead, e.g. 2:4");
  c->add_option("--type", a->type, "Storage of the pruned matrices (f16, f32, bf16, q8_0, ...)")
      ->capture_default_str();
  c->add_option("--calib", a->cal.calib, "Calibration text (wanda, sparsegpt)");
  c->add_option("--damp", a->damp, "SparseGPT: dampening, fraction of mean diag(H)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_flag("--json", a->json, "One JSON summary object on stdout");
  add_calib_options(c, a->cal);
  c->callback([a] {
    const auto t0 = std::chrono::steady_clock::now();
    quant::PruneOptions po;
    po.method = *quant::parse_prune_method(a->method);
    po.sparsity = a->sparsity;
    po.damp = a->damp;
    if (!a->pattern.empty()) {
      const auto nm = quant::parse_nm_pattern(a->pattern);
      if (!nm) fail("--pattern '", a->pattern, "': expected N:M with 0 < N < M, e.g. 2:4");
      po.n = nm->n;
      po.m = nm->m;
    }
    const std::optional<quant::Recipe> recipe = quant::parse_recipe(a->type);
    if (!recipe) fail("unknown --type '", a->type, "'");
    if (po.method != quant::PruneMethod::Magnitude && a->cal.calib.empty())
      fail("--method ", a->method, " needs calibration text (--calib FILE)");
    io::ModelFile m = io::load_model_file(a->in);
    ThreadPool pool(a->cal.threads);
    quant::PruneProcessor p(po, pool);
    // The matrices pruning rewrites: the 7 of every layer.
    std::set<std::string> pruned;
    for (int64_t l = 0; l < quant::count_layers(m); ++l)
      for (int k = 0; k < train::kNumMats; ++k)
        pruned.insert(quant::site_tensor_name(l, static_cast<train::Mat>(k)));
    if (po.method == quant::PruneMethod::Magnitude) {
      // No activations needed: every layer matrix directly.
      train::ImportedModel im = import_for_compression(a->in);
      const train::ParamLayout lay = train::ParamLayout::llama(im.shape);
      quant::CalibModel cm{im.shape, lay, im.params};
      for (int64_t l = 0; l < im.shape.layers; ++l)
        for (int k = 0; k < train::kNumMats; ++k) {
          const auto mat = static_cast<train::Mat>(k);
          quant::CalibSite s;
          s.layer = l;
          s.mat = mat;
          s.tensor = quant::site_tensor_name(l, mat);
          s.rows = lay.at(s.tensor).rows;
          s.cols = lay.at(s.tensor).cols;
          p.process(s, nullptr, 0, cm.mat(l, mat), cm);
        }
      quant::store_params(m, lay, im.params, &pruned);
    } else {
      Calibration cal = prepare_calibration(a->in, a->cal);
      run_calibration_pass(cal, p, a->cal, "prune");
      quant::store_params(m, cal.layout, cal.model.params, &pruned);
    }
    // Store: the pruned layer matrices in --type; every other tensor stays as the file had it.
    quant::QuantizeOptions qo;
    qo.recipe = *recipe;
    std::set<std::string> keep;
    for (const gguf::TensorInfo& t : m.tensors)
      if (!pruned.count(t.name)) keep.insert(t.name);
    quant::quantize_model(m, qo, pool, keep, [](size_t i, size_t n, const std::string& name) {
      progress_line("prune: store", static_cast<int64_t>(i), static_cast<int64_t>(n), name);
    });
    m.set("general.pruned_by",
          gguf::Value::string("brisk prune --method " + a->method +
                              (a->pattern.empty() ? " --sparsity " + std::to_string(a->sparsity)
                                                  : " --pattern " + a->pattern)));
    io::write_gguf(m, a->out);
    const double frac =
        p.total() ? static_cast<double>(p.zeros()) / static_cast<double>(p.total()) : 0;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a->json) {
      nlohmann::ordered_json j = {{"input", a->in},      {"output", a->out},
                                  {"method", a->method}, {"pattern", a->pattern},
                                  {"zeros", p.zeros()},  {"weights", p.total()},
                                  {"sparsity", frac},    {"seconds", secs}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::fprintf(stderr, "prune: wrote %s: %lld of %lld layer weights zero (%.2f%%), %.1f s\n",
                   a->out.c_str(), static_cast<long long>(p.zeros()),
                   static_cast<long long>(p.total()), 100.0 * frac, secs);
    }
  });
}

}  // namespace brisk::cli
