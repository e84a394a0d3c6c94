// Reading training text as documents, in the formats brisk's data tools accept.
//
//   text     plain text; documents are separated by blank lines (default), by a line equal to a
//            given separator string, one per line ("line") or one per file ("file").
//   fortune  Debian fortune files (/usr/share/games/fortunes): entries separated by a line holding
//            a single '%'. Directories are read file by file; the .dat index files and the .u8
//            links next to each file are skipped.
//   gcide    the GNU Collaborative International Dictionary of English in dictd form
//            (/usr/share/dictd/gcide.dict.dz, dictzip = gzip; a decompressed copy works too): one
//            document per entry, markup stripped to plain text (see gcide_entry_text).
//   chat     JSON lines, each {"messages": [{"role": "system|user|assistant", "content": "..."}]}.
//
// Every input file is read through zlib's gzread, so gzip-compressed files of any format are
// decompressed and plain files pass through unchanged.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/function_ref.h"
#include "io/tokenizer/chat_template.h"

namespace brisk::train {

enum class CorpusFormat { kText, kFortune, kGcide, kChat };

std::optional<CorpusFormat> corpus_format_from_name(std::string_view name);
const char* corpus_format_name(CorpusFormat f);

struct CorpusOptions {
  CorpusFormat format = CorpusFormat::kText;
  // text format: "blank" (blank lines), "line", "file", or any other string: a line equal to it.
  std::string doc_separator = "blank";
};

struct Document {
  std::string text;                        // text, fortune and gcide documents
  std::vector<tok::ChatMessage> messages;  // chat documents
  std::string where;                       // "file" or "file:line", for messages
  bool is_chat() const { return !messages.empty(); }
};

// Whole file contents, gunzipped when compressed. Throws brisk::Error naming the file.
std::string read_file_maybe_gz(const std::string& path);

struct InputFile {
  std::string path;
  CorpusFormat format;
};

// Files to read for `specs`. A spec is PATH or FORMAT:PATH (e.g. "gcide:/usr/share/dictd/
// gcide.dict.dz"; FORMAT one of text, fortune, gcide, chat), which overrides `default_format` for
// that input. A file is taken as given; a directory gives its regular files (not recursive), in
// name order, skipping hidden files, fortune's *.dat indexes and *.u8 links. Throws when a path is
// missing or no file is found.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& specs,
                                     CorpusFormat default_format);

// Calls fn for every document of one file, in file order; fn returns false to stop reading.
// Empty documents are skipped. A malformed chat line is a brisk::Error naming file:line.
void read_documents(const std::string& path, const CorpusOptions& opts,
                    FunctionRef<bool(Document&)> fn);
// The same over text already in memory (`name` is used in messages).
void split_documents(std::string_view text, const std::string& name, const CorpusOptions& opts,
                     FunctionRef<bool(Document&)> fn);

// One GCIDE entry (its lines as stored) as plain text: "Headword, pos. [etymology]" then one line
// per sense, with pronunciations (\Ab*bre"vi*ate\ and the respelling after it), source tags
// ([1913 Webster], [PJC], ...), cross-reference braces and accent codes ([=a], ['e], [a^]) removed
// and wrapped lines joined. Returns "" for the database's own 00-database-* entries.
std::string gcide_entry_text(std::string_view entry);

}  // namespace brisk::train
