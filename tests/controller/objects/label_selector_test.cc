// The one selector parser (tenonctl -l, REST ?selector=): kubectl's equality, set and existence
// terms, and what it refuses.
#include "label_selector.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::controller {
namespace {

using Expression = tenon::v1::LabelExpression;
using ::testing::HasSubstr;

TEST(LabelSelectorTest, ReadsEqualitySetAndExistenceTerms) {
  absl::StatusOr<tenon::v1::LabelSelector> selector = parse_label_selector(
      "site=lab, tier==edge,zone!=north,region in (eu, us),rack notin (r1),"
      "gpu,!cordoned");
  ASSERT_TRUE(selector.ok()) << selector.status();
  EXPECT_EQ(selector->match_labels().at("site"), "lab");
  EXPECT_EQ(selector->match_labels().at("tier"), "edge");
  ASSERT_EQ(selector->match_expressions_size(), 5);
  const Expression& not_north = selector->match_expressions(0);
  EXPECT_EQ(not_north.relation(), Expression::RELATION_NOT_IN);
  EXPECT_THAT(not_north.values(), ::testing::ElementsAre("north"));
  const Expression& regions = selector->match_expressions(1);
  EXPECT_EQ(regions.key(), "region");
  EXPECT_EQ(regions.relation(), Expression::RELATION_IN);
  EXPECT_THAT(regions.values(), ::testing::ElementsAre("eu", "us"));
  EXPECT_EQ(selector->match_expressions(2).relation(), Expression::RELATION_NOT_IN);
  EXPECT_EQ(selector->match_expressions(3).relation(), Expression::RELATION_EXISTS);
  EXPECT_EQ(selector->match_expressions(4).key(), "cordoned");
  EXPECT_EQ(selector->match_expressions(4).relation(), Expression::RELATION_DOES_NOT_EXIST);
}

TEST(LabelSelectorTest, RefusesMalformedTermsNamingThem) {
  for (const char* text :
       {"region in (eu", "region in ()", "bad key=x", "site=bad value!", "region in (eu))"}) {
    absl::StatusOr<tenon::v1::LabelSelector> selector = parse_label_selector(text);
    EXPECT_EQ(selector.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  EXPECT_THAT(parse_label_selector("region in (eu").status().message(), HasSubstr("parenthes"));
  EXPECT_TRUE(parse_label_selector("").ok()) << "no terms: an empty selector";
}

}  // namespace
}  // namespace tenon::controller
