// Locates ../shared/testdata (overridable by the BRISK_TESTDATA environment variable).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace brisk::test {

inline std::string testdata_dir() {
  if (const char* e = std::getenv("BRISK_TESTDATA"); e && *e) return e;
  return BRISK_DEFAULT_TESTDATA;
}
inline std::string testdata(const std::string& rel) {
  return testdata_dir() + "/" + rel;
}
inline std::string tests_data(const std::string& rel) {
  return std::string(BRISK_SOURCE_DIR) + "/tests/data/" + rel;
}
inline std::string brisk_binary() {
  return BRISK_BINARY;
}

// A fresh temporary directory removed at destruction.
struct TempDir {
  std::filesystem::path path;
  TempDir();
  ~TempDir();
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<float> read_f32_file(const std::string& path);
std::string read_text_file(const std::string& path);

}  // namespace brisk::test
