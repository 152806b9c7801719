// See label_selector.h.
#include "label_selector.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "validate.h"

namespace tenon::controller {
namespace {

using Expression = tenon::v1::LabelExpression;

// The terms of a selector: split at commas outside parentheses.
absl::StatusOr<std::vector<std::string>> split_terms(const std::string& text) {
  std::vector<std::string> terms;
  std::string term;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) break;
    if (c == ',' && depth == 0) {
      terms.push_back(std::string(absl::StripAsciiWhitespace(term)));
      term.clear();
      continue;
    }
    term.push_back(c);
  }
  if (depth != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("selector '", text, "': unbalanced parentheses"));
  }
  terms.push_back(std::string(absl::StripAsciiWhitespace(term)));
  std::erase_if(terms, [](const std::string& t) { return t.empty(); });
  return terms;
}

absl::Status check_label(const std::string& text, const std::string& key,
                         const std::vector<std::string>& values) {
  if (std::string problem = label_key_problem(key); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("selector '", text, "': label key ", problem));
  }
  for (const std::string& value : values) {
    if (std::string problem = label_value_problem(value); !problem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("selector '", text, "': label value ", problem));
    }
  }
  return absl::OkStatus();
}

// "key in (a, b)" or "key notin (a,b)": the key, relation and values, when the term is one.
bool parse_set_term(const std::string& term, std::string* key, Expression::Relation* relation,
                    std::vector<std::string>* values, absl::Status* problem) {
  const size_t open = term.find('(');
  if (open == std::string::npos) return false;
  std::vector<std::string> words =
      absl::StrSplit(term.substr(0, open), ' ', absl::SkipWhitespace());
  if (words.size() != 2 || (words[1] != "in" && words[1] != "notin")) return false;
  if (term.back() != ')') {
    *problem = absl::InvalidArgumentError(
        absl::StrCat("selector term '", term, "': expected ')' at the end"));
    return true;
  }
  *key = words[0];
  *relation = words[1] == "in" ? Expression::RELATION_IN : Expression::RELATION_NOT_IN;
  for (absl::string_view value :
       absl::StrSplit(term.substr(open + 1, term.size() - open - 2), ',')) {
    values->push_back(std::string(absl::StripAsciiWhitespace(value)));
  }
  if (values->size() == 1 && values->front().empty()) {
    *problem = absl::InvalidArgumentError(absl::StrCat("selector term '", term, "': no values"));
  }
  return true;
}

}  // namespace

absl::StatusOr<tenon::v1::LabelSelector> parse_label_selector(const std::string& text) {
  absl::StatusOr<std::vector<std::string>> terms = split_terms(text);
  if (!terms.ok()) return terms.status();
  tenon::v1::LabelSelector selector;
  for (const std::string& term : *terms) {
    std::string key;
    std::vector<std::string> values;
    Expression::Relation relation = Expression::RELATION_EXISTS;
    absl::Status problem;
    if (parse_set_term(term, &key, &relation, &values, &problem)) {
      if (!problem.ok()) return problem;
    } else if (size_t at = term.find("!="); at != std::string::npos) {
      key = std::string(absl::StripAsciiWhitespace(term.substr(0, at)));
      values.push_back(std::string(absl::StripAsciiWhitespace(term.substr(at + 2))));
      relation = Expression::RELATION_NOT_IN;
    } else if (size_t at = term.find('='); at != std::string::npos) {
      key = std::string(absl::StripAsciiWhitespace(term.substr(0, at)));
      const size_t value_at = term.compare(at, 2, "==") == 0 ? at + 2 : at + 1;
      const std::string value(absl::StripAsciiWhitespace(term.substr(value_at)));
      if (absl::Status valid = check_label(text, key, {value}); !valid.ok()) return valid;
      (*selector.mutable_match_labels())[key] = value;
      continue;
    } else if (term[0] == '!') {
      key = std::string(absl::StripAsciiWhitespace(term.substr(1)));
      relation = Expression::RELATION_DOES_NOT_EXIST;
    } else {
      key = term;
    }
    if (absl::Status valid = check_label(text, key, values); !valid.ok()) return valid;
    Expression* expression = selector.add_match_expressions();
    expression->set_key(key);
    expression->set_relation(relation);
    for (std::string& value : values) expression->add_values(std::move(value));
  }
  return selector;
}

}  // namespace tenon::controller
