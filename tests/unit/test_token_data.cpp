// Training data: the token shard format (round trips, corrupt files), the corpus readers (text,
// fortune, gcide, chat, gzip) and `data prepare` (document encoding, loss masks, the split).
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/testdata.h"
#include "core/error.h"
#include "io/tokenizer/chat_template.h"
#include "train/corpus.h"
#include "train/dataset.h"
#include "train/prepare.h"
#include "train/rng.h"
#include "train_data_util.h"

namespace brisk {
namespace {

std::string slurp(const std::string& path) {
  return test::read_text_file(path);
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

std::vector<train::Document> docs_of(const std::string& text, train::CorpusOptions o) {
  std::vector<train::Document> out;
  train::split_documents(text, "mem", o, [&](train::Document& d) {
    out.push_back(d);
    return true;
  });
  return out;
}

std::vector<std::string> texts_of(const std::vector<train::Document>& docs) {
  std::vector<std::string> t;
  for (const auto& d : docs) t.push_back(d.text);
  return t;
}

// ---------------------------------------------------------------- shards

TEST(TokenShard, RoundTripsDocumentsAndMasks) {
  test::TempDir dir;
  for (const int64_t vocab : {int64_t{400}, int64_t{65536}, int64_t{100000}}) {
    train::TokenShardWriter w(vocab);
    train::SplitMix64 rng(static_cast<uint64_t>(vocab));
    std::vector<train::TokenDoc> want;
    for (int d = 0; d < 50; ++d) {
      train::TokenDoc doc;
      const size_t n = static_cast<size_t>(rng.below(40));  // empty documents too
      for (size_t i = 0; i < n; ++i) {
        doc.tokens.push_back(static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab))));
        doc.mask.push_back(d % 3 == 0 ? static_cast<uint8_t>(rng.below(2)) : 1);
      }
      if (d % 3 == 0)
        w.add(doc.tokens, doc.mask);
      else
        w.add(doc.tokens);  // no mask: all targets
      want.push_back(doc);
    }
    const std::string path = dir.file("s.bin");
    w.write(path);
    const auto ds = train::TokenDataset::open(path);
    EXPECT_EQ(ds->vocab_size(), vocab);
    EXPECT_EQ(ds->token_bytes(), vocab <= 65536 ? 2 : 4);
    EXPECT_TRUE(ds->has_mask());
    ASSERT_EQ(ds->n_docs(), 50);
    EXPECT_EQ(ds->n_tokens(), w.n_tokens());
    for (int d = 0; d < 50; ++d) {
      const train::TokenDoc got = ds->doc(d);
      EXPECT_EQ(got.tokens, want[static_cast<size_t>(d)].tokens);
      EXPECT_EQ(got.mask, want[static_cast<size_t>(d)].mask);
    }
    EXPECT_THROW(ds->doc(50), Error);
  }
}

TEST(TokenShard, WithoutMasksStoresNoBitmapAndEmptyShardsWork) {
  test::TempDir dir;
  train::TokenShardWriter w(1000);
  w.add(std::vector<int32_t>{1, 2, 3});
  w.add(std::vector<int32_t>{4}, std::vector<uint8_t>{1});
  w.write(dir.file("a.bin"));
  const auto ds = train::TokenDataset::open(dir.file("a.bin"));
  EXPECT_FALSE(ds->has_mask());
  EXPECT_EQ(std::filesystem::file_size(dir.file("a.bin")), 64u + 3 * 8 + 8);
  EXPECT_TRUE(ds->is_target(3));
  EXPECT_EQ(ds->token(3), 4);

  train::TokenShardWriter e(10);
  e.write(dir.file("e.bin"));
  const auto es = train::TokenDataset::open(dir.file("e.bin"));
  EXPECT_EQ(es->n_docs(), 0);
  EXPECT_EQ(es->n_tokens(), 0);

  EXPECT_THROW(w.add(std::vector<int32_t>{1000}), Error);  // id out of range
  EXPECT_THROW(w.add(std::vector<int32_t>{1, 2}, std::vector<uint8_t>{1}), Error);
}

TEST(TokenShard, CorruptOrTruncatedFilesAreClearErrors) {
  test::TempDir dir;
  train::TokenShardWriter w(300);
  for (int d = 0; d < 20; ++d) w.add(std::vector<int32_t>(17, d), std::vector<uint8_t>(17, d & 1));
  const std::string good = dir.file("good.bin");
  w.write(good);
  const std::string bytes = slurp(good);
  const std::string p = dir.file("bad.bin");

  spit(p, bytes.substr(0, bytes.size() - 8));
  expect_error([&] { train::TokenDataset::open(p); }, "truncated");
  spit(p, bytes.substr(0, 30));
  expect_error([&] { train::TokenDataset::open(p); }, "truncated");
  spit(p, bytes + "xxxxxxxx");
  expect_error([&] { train::TokenDataset::open(p); }, "trailing");
  std::string b = bytes;
  b[0] = 'X';
  spit(p, b);
  expect_error([&] { train::TokenDataset::open(p); }, "bad magic");
  b = bytes;
  b[24] ^= 1;  // n_docs, caught by the header CRC
  spit(p, b);
  expect_error([&] { train::TokenDataset::open(p); }, "header is corrupt");
  b = bytes;
  b[b.size() - 20] ^= 0x40;  // a token or mask byte
  spit(p, b);
  expect_error([&] { train::TokenDataset::open(p); }, "CRC mismatch");
  EXPECT_NO_THROW(train::TokenDataset::open(p, /*verify=*/false));  // cheap open skips the CRC
  spit(p, "");
  expect_error([&] { train::TokenDataset::open(p); }, "bad.bin");
  expect_error([&] { train::TokenDataset::open(dir.file("missing.bin")); }, "missing.bin");
}

// ---------------------------------------------------------------- corpus readers

TEST(Corpus, TextSeparators) {
  const std::string text = "one\ntwo\n\n\n  \nthree\n%\nfour\n";
  train::CorpusOptions o;
  EXPECT_EQ(texts_of(docs_of(text, o)), (std::vector<std::string>{"one\ntwo", "three\n%\nfour"}));
  o.doc_separator = "line";
  EXPECT_EQ(texts_of(docs_of(text, o)),
            (std::vector<std::string>{"one", "two", "three", "%", "four"}));
  o.doc_separator = "file";
  EXPECT_EQ(texts_of(docs_of(text, o)),
            (std::vector<std::string>{"one\ntwo\n\n\n  \nthree\n%\nfour"}));
  o.doc_separator = "%";
  EXPECT_EQ(texts_of(docs_of(text, o)),
            (std::vector<std::string>{"one\ntwo\n\n\n  \nthree", "four"}));
  // CRLF line ends are normalised.
  o.doc_separator = "blank";
  EXPECT_EQ(texts_of(docs_of("a\r\nb\r\n\r\nc", o)), (std::vector<std::string>{"a\nb", "c"}));
}

TEST(Corpus, FortuneEntries) {
  const std::string text =
      "A fortune\n  with an indented line.\n\n\t\t-- Someone\n%\nSecond.\n%\n%\nThird\n";
  train::CorpusOptions o;
  o.format = train::CorpusFormat::kFortune;
  EXPECT_EQ(texts_of(docs_of(text, o)),
            (std::vector<std::string>{"A fortune\n  with an indented line.\n\n\t\t-- Someone",
                                      "Second.", "Third"}));
}

TEST(Corpus, GcideEntriesBecomePlainText) {
  const std::string dict =
      "00-database-short\n   The Collaborative International Dictionary\n\n"
      "Abbreviate \\Ab*bre\"vi*ate\\ ([a^]b*br[=e]\"v[i^]*[=a]t), v. t. [L.\n"
      "   abbreviatus, p. p. of abbreviare. See {Abridge}.]\n"
      "   1. To make briefer; to shorten; to abridge. [Obs.]\n"
      "      [1913 Webster]\n\n"
      "            The only invention of the late ages -- Milton.\n"
      "      [1913 Webster]\n\n"
      "   2. To reduce to lower terms. See {Abbr['e]ger}.\n"
      "      [1913 Webster +PJC]\n\n"
      "Zythum \\Zy\"thum\\, n.\n   A kind of ancient malt beverage.\n   [1913 Webster]\n";
  train::CorpusOptions o;
  o.format = train::CorpusFormat::kGcide;
  const auto docs = texts_of(docs_of(dict, o));
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0],
            "Abbreviate, v. t. [L. abbreviatus, p. p. of abbreviare. See Abridge.] 1. To make "
            "briefer; to shorten; to abridge. [Obs.]\n"
            "The only invention of the late ages -- Milton.\n"
            "2. To reduce to lower terms. See Abbreger.");
  EXPECT_EQ(docs[1], "Zythum, n. A kind of ancient malt beverage.");
}

TEST(Corpus, ChatLinesAndTheirErrors) {
  const std::string jsonl =
      R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},)"
      R"({"role":"assistant","content":"Hello!"}]})"
      "\n\n"
      R"({"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]})"
      "\n";
  train::CorpusOptions o;
  o.format = train::CorpusFormat::kChat;
  const auto docs = docs_of(jsonl, o);
  ASSERT_EQ(docs.size(), 2u);
  ASSERT_EQ(docs[0].messages.size(), 3u);
  EXPECT_EQ(docs[0].messages[2].role, "assistant");
  EXPECT_EQ(docs[0].messages[2].content, "Hello!");
  EXPECT_EQ(docs[1].where, "mem:3");
  expect_error([&] { docs_of("{\"messages\": [}\n", o); }, "mem:1: not valid JSON");
  expect_error([&] { docs_of("\n{\"msgs\": []}\n", o); }, "mem:2");
  expect_error([&] { docs_of(R"({"messages":[{"role":"robot","content":"x"}]})", o); },
               "role 'robot'");
  expect_error([&] { docs_of(R"({"messages":[{"role":"user"}]})", o); }, "messages[0]");
}

TEST(Corpus, InputsExpandAndGzipIsRead) {
  test::TempDir dir;
  std::filesystem::create_directory(dir.file("f"));
  spit(dir.file("f/b"), "bee\n%\nbuzz\n");
  spit(dir.file("f/a"), "ant\n");
  spit(dir.file("f/a.dat"), std::string("\x00\x01\x02", 3));
  spit(dir.file("f/.hidden"), "no");
  std::filesystem::create_symlink("a", dir.file("f/a.u8"));
  const auto files = train::expand_inputs({dir.file("f"), "chat:" + dir.file("f/a")},
                                          train::CorpusFormat::kFortune);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].path, dir.file("f/a"));
  EXPECT_EQ(files[0].format, train::CorpusFormat::kFortune);
  EXPECT_EQ(files[1].path, dir.file("f/b"));
  EXPECT_EQ(files[2].path, dir.file("f/a"));
  EXPECT_EQ(files[2].format, train::CorpusFormat::kChat);
  expect_error([&] { train::expand_inputs({dir.file("nope")}, train::CorpusFormat::kText); },
               "nope");

  const std::string gz = dir.file("t.gz");
  gzFile g = gzopen(gz.c_str(), "wb");
  ASSERT_NE(g, nullptr);
  const std::string payload = "compressed\n\ntext\n";
  gzwrite(g, payload.data(), static_cast<unsigned>(payload.size()));
  gzclose(g);
  EXPECT_EQ(train::read_file_maybe_gz(gz), payload);
  EXPECT_EQ(train::read_file_maybe_gz(dir.file("f/a")), "ant\n");  // plain files pass through
  const std::string z = slurp(gz);
  spit(dir.file("cut.gz"), z.substr(0, z.size() - 6));
  EXPECT_THROW(train::read_file_maybe_gz(dir.file("cut.gz")), Error);
}

// ---------------------------------------------------------------- document encoding and split

TEST(Prepare, TextDocumentsGetBosAndEos) {
  const auto tk = test::small_tokenizer();
  train::Document d;
  d.text = "the dog <|endoftext|> runs";
  const train::EncodedDoc e = train::encode_document(*tk, d);
  EXPECT_TRUE(e.mask.empty());
  ASSERT_GE(e.tokens.size(), 3u);
  EXPECT_EQ(e.tokens.front(), tk->bos_id());
  EXPECT_EQ(e.tokens.back(), tk->eos_id());
  // Special-token text inside a document stays text.
  EXPECT_EQ(std::count(e.tokens.begin(), e.tokens.end(), tk->eos_id()), 2);
  EXPECT_EQ(tk->decode(e.tokens), "<|endoftext|>" + d.text + "<|endoftext|>");
}

TEST(Prepare, ChatDocumentsMaskAllButTheAssistant) {
  const auto tk = test::small_tokenizer();
  train::Document d;
  d.messages = {{"system", "Be brief."},
                {"user", "the fox?"},
                {"assistant", "the dog runs."},
                {"user", "\nand?"},
                {"assistant", "\n over"}};
  const train::EncodedDoc e = train::encode_document(*tk, d);
  ASSERT_EQ(e.mask.size(), e.tokens.size());
  // The ids are exactly what encode gives the rendered conversation (plus BOS / EOS).
  const std::string rendered =
      tok::apply_chat_template(tok::ChatFamily::ChatML, d.messages, false, "", "");
  std::vector<int32_t> want = tk->encode(rendered, true, true);
  want.push_back(tk->eos_id());
  EXPECT_EQ(e.tokens, want);
  // The masked tokens spell the assistant contents, each followed by <|im_end|>. (A token
  // straddling "\n" + content would count as the assistant's; this vocabulary never merges "\n\n".)
  std::vector<int32_t> trained;
  for (size_t i = 0; i < e.tokens.size(); ++i)
    if (e.mask[i]) trained.push_back(e.tokens[i]);
  EXPECT_EQ(tk->decode(trained), "the dog runs.<|im_end|>\n over<|im_end|>");
  EXPECT_EQ(e.n_bytes, static_cast<int64_t>(rendered.size()));
}

TEST(Prepare, SplitIsDeterministicDisjointAndCoversEverything) {
  const auto tk = test::small_tokenizer();
  test::TempDir dir;
  const auto docs = test::small_corpus(400, 21);
  std::string a, b;
  for (size_t i = 0; i < docs.size(); ++i) (i % 2 ? a : b) += docs[i] + "\n\n";
  spit(dir.file("a.txt"), a);
  spit(dir.file("b.txt"), b);
  train::PrepareConfig cfg;
  cfg.inputs = {dir.file("a.txt"), dir.file("b.txt")};
  cfg.out_prefix = dir.file("out");
  cfg.val_fraction = 0.2;
  cfg.seed = 5;
  cfg.threads = 1;
  const train::PrepareSummary s = train::prepare_dataset(*tk, cfg);
  EXPECT_EQ(s.files, 2);
  EXPECT_EQ(s.train.docs + s.val.docs, 400);
  EXPECT_GT(s.val.docs, 40);
  EXPECT_LT(s.val.docs, 130);
  EXPECT_GT(s.bytes_per_token(), 2.0);

  auto doc_set = [&](const std::string& path) {
    std::multiset<std::string> out;
    const auto ds = train::TokenDataset::open(path);
    for (int64_t i = 0; i < ds->n_docs(); ++i) {
      auto t = ds->doc(i).tokens;
      EXPECT_EQ(t.front(), tk->bos_id());
      EXPECT_EQ(t.back(), tk->eos_id());
      out.insert(tk->decode(std::vector<int32_t>(t.begin() + 1, t.end() - 1)));
    }
    return out;
  };
  const auto train_docs = doc_set(s.train.path), val_docs = doc_set(s.val.path);
  for (const auto& v : val_docs) EXPECT_EQ(train_docs.count(v), 0u);
  std::multiset<std::string> all(docs.begin(), docs.end()), got = train_docs;
  got.insert(val_docs.begin(), val_docs.end());
  EXPECT_EQ(got, all);

  // Same seed, other thread count: identical files. Another seed: another split.
  const std::string train_bytes = slurp(s.train.path), val_bytes = slurp(s.val.path);
  cfg.threads = 3;
  cfg.out_prefix = dir.file("out3");
  const auto s3 = train::prepare_dataset(*tk, cfg);
  EXPECT_EQ(slurp(s3.train.path), train_bytes);
  EXPECT_EQ(slurp(s3.val.path), val_bytes);
  cfg.seed = 6;
  cfg.out_prefix = dir.file("out6");
  const auto s6 = train::prepare_dataset(*tk, cfg);
  EXPECT_NE(slurp(s6.val.path), val_bytes);

  // is_validation_doc depends only on the text and the seed.
  train::Document d;
  d.text = docs[0];
  const bool v = train::is_validation_doc(d, 5, 0.2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(train::is_validation_doc(d, 5, 0.2), v);
  EXPECT_FALSE(train::is_validation_doc(d, 5, 0.0));
}

TEST(Prepare, ChatShardsCarryTheMask) {
  const auto tk = test::small_tokenizer();
  test::TempDir dir;
  std::string jsonl;
  for (int i = 0; i < 30; ++i)
    jsonl += R"({"messages":[{"role":"user","content":"the fox )" + std::to_string(i) +
             R"("},{"role":"assistant","content":"the dog"}]})" + "\n";
  spit(dir.file("c.jsonl"), jsonl);
  train::PrepareConfig cfg;
  cfg.inputs = {dir.file("c.jsonl")};
  cfg.corpus.format = train::CorpusFormat::kChat;
  cfg.out_prefix = dir.file("chat");
  cfg.val_fraction = 0;
  const auto s = train::prepare_dataset(*tk, cfg);
  EXPECT_EQ(s.train.docs, 30);
  EXPECT_EQ(s.val.docs, 0);
  const auto ds = train::TokenDataset::open(s.train.path);
  EXPECT_TRUE(ds->has_mask());
  EXPECT_LT(s.train.targets * 2, s.train.tokens);
  const auto doc = ds->doc(0);
  std::vector<int32_t> trained;
  for (size_t i = 0; i < doc.tokens.size(); ++i)
    if (doc.mask[i]) trained.push_back(doc.tokens[i]);
  EXPECT_EQ(tk->decode(trained), "the dog<|im_end|>");

  // A bad line fails the whole run with its location, and writes nothing.
  spit(dir.file("bad.jsonl"), jsonl + "{oops\n");
  cfg.inputs = {dir.file("bad.jsonl")};
  cfg.out_prefix = dir.file("bad");
  expect_error([&] { train::prepare_dataset(*tk, cfg); }, "bad.jsonl:31");
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.train.bin")));
}

}  // namespace
}  // namespace brisk
