// brisk tokenize: print the token ids of a text on one line (works on vocab-only GGUF files).
#include <cstdio>

#include "cli.h"
#include "core/error.h"

namespace brisk::cli {

void add_tokenize_command(CLI::App& app) {
  struct Args {
    std::string model, prompt, file;
    bool no_bos = false, no_parse_special = false, pieces = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("tokenize", "Print the token ids of a text");
  c->add_option("-m,--model", a->model, "Model or vocab-only GGUF")->required();
  auto* p = c->add_option("-p,--prompt", a->prompt, "Text to tokenize");
  auto* f = c->add_option("-f,--file", a->file, "Read the text from a file")->excludes(p);
  (void)f;
  c->add_flag("--no-bos", a->no_bos, "Do not add BOS/EOS tokens");
  c->add_flag("--no-parse-special", a->no_parse_special, "Treat special-token text as plain text");
  c->add_flag("--pieces", a->pieces, "Print id:'piece' pairs instead of bare ids");
  c->callback([a] {
    if (a->prompt.empty() && a->file.empty()) fail("tokenize: give -p TEXT or -f FILE");
    std::string text = a->file.empty() ? a->prompt : read_file_text(a->file);
    Loaded l = load(a->model, false);
    if (!l.tokenizer) fail(a->model, ": no tokenizer metadata (tokenizer.ggml.tokens)");
    std::vector<int32_t> ids = l.tokenizer->encode(text, !a->no_bos, !a->no_parse_special);
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
      if (a->pieces) out += ":'" + l.tokenizer->token_to_piece(ids[i]) + "'";
    }
    std::printf("%s\n", out.c_str());
  });
}

}  // namespace brisk::cli
