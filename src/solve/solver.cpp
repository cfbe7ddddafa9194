// The global solve (see include/hiq/solve/solver.h and docs/SOLVER.md).
//
// Conventions used throughout: a "group" is a set of layers of one block connected by pair
// terms (a block whose layers share no pair term falls apart into one group per layer); groups
// are independent except through the budget, which is what makes the pareto path exact. Every
// answer is re-scored with the canonical Objective()/Bits() and checked against the budget in
// double before it is returned.
#include "hiq/solve/solver.h"

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hiq/solve/glpk.h"  // glpk::Problem, glp_intopt behind RAII

namespace hiq {
namespace {

using Clock = std::chrono::steady_clock;

// Bits or costs closer than this (relative to the budget / objective scale) are treated as
// equal by the pre-GLPK filters, which only ever keep extra points: exactness is then restored
// by the canonical re-check of the final plan. 1e-12 is ~1e4 ulps, far above the rounding of a
// few hundred additions and far below any real difference (one bit in 1e10 is 1e-10).
constexpr double kFilterRelTol = 1e-12;
// Times the knapsack is re-solved with a no-good cut after GLPK's 1e-7 row tolerance let an
// over-budget plan through. Each cut removes exactly one plan, so optimality is kept.
constexpr int kMaxBudgetCuts = 50;

// printf-like formatting without a runtime format string (-Wformat-nonliteral).
std::string Format(double v, std::chars_format format, int precision) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, format, precision);
  HIQ_CHECK(ec == std::errc());
  return std::string(buf, end);
}
std::string Num(double v) { return Format(v, std::chars_format::general, 17); }
std::string Fixed(double v, int decimals) { return Format(v, std::chars_format::fixed, decimals); }

// "name[a][b]" for messages.
std::string Entry(const char* name, size_t a, size_t b) {
  std::string s(name);
  s.append("[").append(std::to_string(a)).append("][").append(std::to_string(b)).append("]");
  return s;
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What is left of a time limit that started at `start`; at least 1 ms so that GLPK still runs
// (and reports the time limit) when the enumeration or model building used it all.
double RemainingSeconds(Clock::time_point start, double limit_s) {
  return std::max(limit_s - Seconds(start), 1e-3);
}

void CheckOptions(const char* function, const SolverOptions& options) {
  if (!(options.time_limit_s > 0)) {
    throw SolverError(std::string(function) + ": time_limit_s is " + Num(options.time_limit_s) +
                      "; expected a positive number of seconds (or infinity)");
  }
  if (!(options.mip_gap >= 0) || !std::isfinite(options.mip_gap)) {
    throw SolverError(std::string(function) + ": mip_gap is " + Num(options.mip_gap) +
                      "; expected a finite number >= 0");
  }
}

// ---------------------------------------------------------------- canonical sums and bounds

double BitsUnchecked(const PlanProblem& p, const std::vector<int>& choice) {
  double total = 0;
  for (size_t l = 0; l < choice.size(); ++l) total += p.bits[l][choice[l]];
  return total;
}

double ObjectiveUnchecked(const PlanProblem& p, const std::vector<int>& choice) {
  double total = 0;
  for (size_t l = 0; l < choice.size(); ++l) total += p.cost[l][choice[l]];
  for (const PlanProblem::Pair& pair : p.pairs) {
    const size_t k2 = p.cost[pair.l2].size();
    total += pair.cost[choice[pair.l1] * k2 + choice[pair.l2]];
  }
  return total;
}

// A solution re-scored from its choice (never trusting a solver's own objective), with the
// bound and gap its status allows.
PlanSolution MakeSolution(const PlanProblem& p, std::vector<int> choice, std::string status,
                          double bound, const char* method, std::string detail,
                          Clock::time_point start) {
  PlanSolution s;
  s.choice = std::move(choice);
  s.objective = ObjectiveUnchecked(p, s.choice);
  s.bits = BitsUnchecked(p, s.choice);
  HIQ_CHECK(s.bits <= p.budget_bits);
  s.status = std::move(status);
  s.bound = s.status == "optimal" ? s.objective : std::min(bound, s.objective);
  s.gap = s.status == "optimal"
              ? 0.0
              : (s.objective - s.bound) / std::max(std::fabs(s.objective), DBL_EPSILON);
  s.method = method;
  s.detail = std::move(detail);
  s.seconds = Seconds(start);
  return s;
}

void CheckChoice(const char* function, const PlanProblem& p, const std::vector<int>& choice) {
  if (choice.size() != p.bits.size()) {
    throw SolverError(std::string(function) + ": choice has " + std::to_string(choice.size()) +
                      " entries; expected one per layer (" + std::to_string(p.bits.size()) + ")");
  }
  for (size_t l = 0; l < choice.size(); ++l) {
    if (choice[l] < 0 || choice[l] >= static_cast<int>(p.bits[l].size())) {
      throw SolverError(std::string(function) + ": choice[" + std::to_string(l) + "] is " +
                        std::to_string(choice[l]) + "; expected a candidate index in 0.." +
                        std::to_string(p.bits[l].size() - 1));
    }
  }
}

// The assignment with the fewest (most) bits in every layer; ties to the lower index.
std::vector<int> ExtremeBitsChoice(const PlanProblem& p, bool most) {
  std::vector<int> choice(p.bits.size());
  for (size_t l = 0; l < p.bits.size(); ++l) {
    const auto& b = p.bits[l];
    choice[l] = static_cast<int>(most ? std::max_element(b.begin(), b.end()) - b.begin()
                                      : std::min_element(b.begin(), b.end()) - b.begin());
  }
  return choice;
}

// Average bits as short as is unambiguous: 6 significant digits unless that would make the
// budget print the same as the bound it misses.
std::string AvgBits(double v, bool precise) {
  return Format(v, std::chars_format::general, precise ? 17 : 6);
}

// Throws the "infeasible budget" error if no assignment fits.
void CheckBudgetFeasible(const char* function, const PlanProblem& p) {
  const double min_bits = BitsUnchecked(p, ExtremeBitsChoice(p, false));
  if (p.budget_bits >= min_bits) return;
  const double max_bits = BitsUnchecked(p, ExtremeBitsChoice(p, true));
  const double budget_avg = p.budget_bits / p.n_weights;
  const double min_avg = min_bits / p.n_weights;
  const bool precise = AvgBits(budget_avg, false) == AvgBits(min_avg, false);
  throw SolverError(std::string(function) + ": budget " + AvgBits(budget_avg, precise) +
                    " bits/weight is infeasible: achievable average bits range from " +
                    AvgBits(min_avg, precise) + " to " + AvgBits(max_bits / p.n_weights, precise) +
                    ". HINT: raise the budget to at least " + AvgBits(min_avg, precise) +
                    " bits/weight");
}

// The power of two nearest above |v| (1 for 0), so that dividing by it is exact.
double PowerOfTwoScale(double v) {
  if (!(v > 0) || !std::isfinite(v)) return 1.0;
  int exponent = 0;
  std::frexp(v, &exponent);  // v = f * 2^exponent, f in [0.5, 1)
  return std::ldexp(1.0, exponent);
}

std::string StatusOf(const glpk::MipResult& r) {
  if (r.status == glpk::MipStatus::kOptimal) return "optimal";
  return r.time_limit_hit ? "feasible (time limit)" : "feasible";
}

// ---------------------------------------------------------------- groups and frontiers

struct Group {
  int block = 0;
  std::vector<int> layers;  // ascending
};

// Connected components of the pair graph; ordered by (block, first layer) for determinism.
std::vector<Group> MakeGroups(const PlanProblem& p) {
  const int n_layer = static_cast<int>(p.bits.size());
  std::vector<int> parent(n_layer);
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int l) {
    while (parent[l] != l) l = parent[l] = parent[parent[l]];
    return l;
  };
  for (const PlanProblem::Pair& pair : p.pairs) {
    const int a = find(pair.l1), b = find(pair.l2);
    parent[std::max(a, b)] = std::min(a, b);  // the root is the smallest layer
  }
  std::map<int, int> index_of_root;  // ordered: roots ascend with their first layer
  std::vector<Group> groups;
  for (int l = 0; l < n_layer; ++l) {
    const int root = find(l);
    auto [it, added] = index_of_root.emplace(root, static_cast<int>(groups.size()));
    if (added) groups.push_back(Group{p.block_of_layer[l], {}});
    groups[it->second].layers.push_back(l);
  }
  std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
    return a.block != b.block ? a.block < b.block : a.layers[0] < b.layers[0];
  });
  return groups;
}

// One combination of a group's candidates: code is the mixed-radix number with the group's
// first layer most significant, so code order is lexicographic order of the choices.
struct Point {
  double bits;
  double cost;
  uint32_t code;
};

int64_t CombinationCount(const PlanProblem& p, const Group& g) {
  int64_t n = 1;
  for (int l : g.layers) {
    n *= static_cast<int64_t>(p.bits[l].size());
    if (n > kParetoMaxBlockCombinations) return n;
  }
  return n;
}

void DecodeInto(const PlanProblem& p, const Group& g, uint32_t code, std::vector<int>* choice) {
  for (size_t k = g.layers.size(); k-- > 0;) {
    const uint32_t radix = static_cast<uint32_t>(p.bits[g.layers[k]].size());
    (*choice)[g.layers[k]] = static_cast<int>(code % radix);
    code /= radix;
  }
}

// A pair term seen from its deeper layer's depth in the group's enumeration.
struct Link {
  int other_depth;      // the shallower layer's depth (it is the pair's l1)
  const double* table;  // row-major K_shallow x K_deep
  int k_deep;
};

// For each depth, the pair terms linking it to a shallower layer of the group, so that each
// pair is added once, when its deeper layer is assigned.
std::vector<std::vector<Link>> LinksByDepth(const PlanProblem& p, const Group& g,
                                            const std::vector<std::vector<int>>& pairs_of_layer) {
  std::vector<std::vector<Link>> links(g.layers.size());
  for (size_t k = 0; k < g.layers.size(); ++k) {
    const int l = g.layers[k];
    for (int pair_index : pairs_of_layer[l]) {
      const PlanProblem::Pair& pair = p.pairs[pair_index];
      if (pair.l2 != l) continue;  // registered at its deeper layer only
      const int other = static_cast<int>(
          std::lower_bound(g.layers.begin(), g.layers.end(), pair.l1) - g.layers.begin());
      links[k].push_back({other, pair.cost.data(), static_cast<int>(p.bits[l].size())});
    }
  }
  return links;
}

// Every combination's exact (bits, cost) by an iterative depth-first walk with partial sums, in
// code order. Position k is the depth being (re)assigned.
std::vector<Point> EnumerateCombinations(const PlanProblem& p, const Group& g,
                                         const std::vector<std::vector<Link>>& links) {
  const int depth_n = static_cast<int>(g.layers.size());
  std::vector<Point> points;
  points.reserve(static_cast<size_t>(CombinationCount(p, g)));
  std::vector<int> m(depth_n, 0);
  std::vector<double> bits_at(depth_n + 1, 0.0), cost_at(depth_n + 1, 0.0);
  std::vector<uint32_t> code_at(depth_n + 1, 0);
  int k = 0;
  m[0] = 0;
  while (k >= 0) {
    const int l = g.layers[k];
    const int n_cand = static_cast<int>(p.bits[l].size());
    if (m[k] == n_cand) {
      --k;
      if (k >= 0) ++m[k];
      continue;
    }
    double cost = cost_at[k] + p.cost[l][m[k]];
    for (const Link& link : links[k]) cost += link.table[m[link.other_depth] * link.k_deep + m[k]];
    bits_at[k + 1] = bits_at[k] + p.bits[l][m[k]];
    cost_at[k + 1] = cost;
    code_at[k + 1] = code_at[k] * static_cast<uint32_t>(n_cand) + static_cast<uint32_t>(m[k]);
    if (k + 1 == depth_n) {
      points.push_back({bits_at[k + 1], cost, code_at[k + 1]});
      ++m[k];
    } else {
      ++k;
      m[k] = 0;
    }
  }
  return points;
}

// The Pareto frontier: sorted by bits ascending, a point is kept only if it costs strictly less
// than every point with fewer or equal bits. Ties (same bits and cost) keep the smallest code,
// so the result does not depend on sort stability.
std::vector<Point> KeepFrontier(std::vector<Point> points) {
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    if (a.bits != b.bits) return a.bits < b.bits;
    if (a.cost != b.cost) return a.cost < b.cost;
    return a.code < b.code;
  });
  std::vector<Point> frontier;
  for (const Point& pt : points) {
    if (frontier.empty() || pt.cost < frontier.back().cost) frontier.push_back(pt);
  }
  return frontier;
}

// A group's frontier over all its combinations: strictly increasing bits, strictly decreasing
// cost.
std::vector<Point> Frontier(const PlanProblem& p, const Group& g,
                            const std::vector<std::vector<int>>& pairs_of_layer) {
  return KeepFrontier(EnumerateCombinations(p, g, LinksByDepth(p, g, pairs_of_layer)));
}

// ---------------------------------------------------------------- multiple-choice knapsack

// min sum_g cost[g][pick_g] s.t. sum_g bits[g][pick_g] <= capacity, one pick per group. Each
// group's points have strictly increasing bits and strictly decreasing cost (a frontier).
struct Knapsack {
  std::vector<std::vector<Point>> groups;
  double capacity = 0;  // on the sum of bits
};

struct Relaxation {
  double lambda = 0;        // the LP-optimal price of one bit (0 if the budget is slack)
  double lp_bound = 0;      // LP relaxation value: a lower bound on the knapsack optimum
  std::vector<int> greedy;  // an integer-feasible pick per group
  double greedy_cost = 0;
  double greedy_bits = 0;
};

// Lagrangian (LP dual) bound for a bit price lambda >= 0:
//   L(lambda) = sum_g min_p (cost_p + lambda bits_p) - lambda capacity <= knapsack optimum,
// with equality to the LP relaxation at the optimal lambda. Bits are taken relative to each
// group's fewest-bits point so that lambda * bits does not cancel catastrophically.
// best (optional) receives each group's min_p term.
double LagrangianBound(const Knapsack& ks, double lambda, std::vector<double>* best) {
  double capacity = ks.capacity;
  for (const auto& pts : ks.groups) capacity -= pts[0].bits;
  double bound = -lambda * capacity;
  if (best != nullptr) best->clear();
  for (const auto& pts : ks.groups) {
    double group_best = pts[0].cost;
    for (const Point& pt : pts) {
      group_best = std::min(group_best, pt.cost + lambda * (pt.bits - pts[0].bits));
    }
    bound += group_best;
    if (best != nullptr) best->push_back(group_best);
  }
  return bound;
}

// Indices of the points on the lower convex hull of one group's frontier, ascending.
std::vector<int> LowerHull(const std::vector<Point>& pts) {
  std::vector<int> h;
  for (int i = 0; i < static_cast<int>(pts.size()); ++i) {
    // Pop the last hull point while it is not strictly below the chord to point i.
    while (h.size() >= 2) {
      const Point& a = pts[h[h.size() - 2]];
      const Point& b = pts[h.back()];
      const Point& c = pts[i];
      if ((b.cost - a.cost) * (c.bits - b.bits) >= (c.cost - b.cost) * (b.bits - a.bits)) {
        h.pop_back();
      } else {
        break;
      }
    }
    h.push_back(i);
  }
  return h;
}

struct Increment {
  double saving_per_bit;
  int group;
  int step;  // from hull point `step` to `step + 1`
};

// Every group's hull increments, the largest saving per bit first (a stable sort, so ties keep
// group order and the walk is deterministic).
std::vector<Increment> SortedIncrements(const Knapsack& ks,
                                        const std::vector<std::vector<int>>& hull) {
  std::vector<Increment> increments;
  for (int g = 0; g < static_cast<int>(ks.groups.size()); ++g) {
    const auto& pts = ks.groups[g];
    const auto& h = hull[g];
    for (int s = 0; s + 1 < static_cast<int>(h.size()); ++s) {
      const Point& a = pts[h[s]];
      const Point& b = pts[h[s + 1]];
      increments.push_back({(a.cost - b.cost) / (b.bits - a.bits), g, s});
    }
  }
  std::stable_sort(increments.begin(), increments.end(), [](const auto& a, const auto& b) {
    return a.saving_per_bit > b.saving_per_bit;
  });
  return increments;
}

// Takes the increments in order while they fit, skipping those that do not; a group stops at
// its first increment that does not fit. Returns each group's hull step reached; lambda
// receives the slope of the first increment that did not fit (left as is if all fit).
std::vector<int> WalkIncrements(const Knapsack& ks, const std::vector<std::vector<int>>& hull,
                                const std::vector<Increment>& increments, double* lambda) {
  const int n_group = static_cast<int>(ks.groups.size());
  std::vector<int> step(n_group, 0);
  std::vector<char> blocked(n_group, 0);
  bool priced = false;
  double used = 0;
  for (int g = 0; g < n_group; ++g) used += ks.groups[g][0].bits;
  for (const Increment& inc : increments) {
    if (blocked[inc.group] || inc.step != step[inc.group]) continue;
    const auto& pts = ks.groups[inc.group];
    const double dw = pts[hull[inc.group][inc.step + 1]].bits - pts[hull[inc.group][inc.step]].bits;
    if (dw <= ks.capacity - used) {
      ++step[inc.group];
      used += dw;
      continue;
    }
    // The first increment that does not fit is the LP's fractional one: its slope is the
    // optimal bit price.
    if (!priced) *lambda = inc.saving_per_bit;
    priced = true;
    blocked[inc.group] = 1;
  }
  return step;
}

void UpdateGreedyTotals(const Knapsack& ks, Relaxation* r) {
  r->greedy_cost = r->greedy_bits = 0;
  for (size_t g = 0; g < ks.groups.size(); ++g) {
    r->greedy_cost += ks.groups[g][r->greedy[g]].cost;
    r->greedy_bits += ks.groups[g][r->greedy[g]].bits;
  }
}

// Moves one group at a time to the point with the largest saving that still fits, until no
// move does: the walk leaves capacity that off-hull points can use.
void PolishGreedy(const Knapsack& ks, Relaxation* r) {
  for (;;) {
    double best_saving = 0;
    int best_g = -1, best_i = -1;
    for (int g = 0; g < static_cast<int>(ks.groups.size()); ++g) {
      const auto& pts = ks.groups[g];
      const Point& cur = pts[r->greedy[g]];
      for (int i = r->greedy[g] + 1; i < static_cast<int>(pts.size()); ++i) {
        if (r->greedy_bits - cur.bits + pts[i].bits > ks.capacity) break;
        if (cur.cost - pts[i].cost > best_saving) {
          best_saving = cur.cost - pts[i].cost;
          best_g = g;
          best_i = i;
        }
      }
    }
    if (best_g < 0) break;
    r->greedy[best_g] = best_i;
    UpdateGreedyTotals(ks, r);
  }
}

// The LP relaxation of a multiple-choice knapsack is solved greedily on the lower convex hull
// of each group (Sinha & Zoltners 1979): start every group at its fewest-bits point and take
// hull increments in order of cost saved per bit until the capacity is reached. The increment
// that does not fit sets the bit price lambda, and L(lambda) is the LP bound. The
// same walk, skipping increments that do not fit, then polished by single-group moves into the
// remaining capacity, gives an integer incumbent.
Relaxation SolveRelaxation(const Knapsack& ks) {
  std::vector<std::vector<int>> hull;  // per group, indices into its points
  for (const auto& pts : ks.groups) hull.push_back(LowerHull(pts));
  Relaxation r;
  const std::vector<int> step = WalkIncrements(ks, hull, SortedIncrements(ks, hull), &r.lambda);
  r.lp_bound = LagrangianBound(ks, r.lambda, nullptr);
  r.greedy.resize(ks.groups.size());
  for (size_t g = 0; g < ks.groups.size(); ++g) r.greedy[g] = hull[g][step[g]];
  UpdateGreedyTotals(ks, &r);
  PolishGreedy(ks, &r);
  return r;
}

// ---------------------------------------------------------------- pareto steps

// pairs_of_layer[l]: the indices of the pairs that involve layer l (Frontier's links).
std::vector<std::vector<int>> PairsOfLayer(const PlanProblem& p) {
  std::vector<std::vector<int>> pairs_of_layer(p.bits.size());
  for (size_t i = 0; i < p.pairs.size(); ++i) {
    pairs_of_layer[p.pairs[i].l1].push_back(static_cast<int>(i));
    pairs_of_layer[p.pairs[i].l2].push_back(static_cast<int>(i));
  }
  return pairs_of_layer;
}

// The knapsack whose item groups are the groups' Pareto frontiers. A group with too many
// combinations is refused before it is enumerated: the enumeration is exponential.
Knapsack FrontierKnapsack(const PlanProblem& p, const std::vector<Group>& groups) {
  const std::vector<std::vector<int>> pairs_of_layer = PairsOfLayer(p);
  Knapsack ks;
  ks.groups.reserve(groups.size());
  for (const Group& g : groups) {
    if (CombinationCount(p, g) > kParetoMaxBlockCombinations) {
      throw SolverError("SolvePareto: block " + std::to_string(g.block) + " has " +
                        std::to_string(g.layers.size()) +
                        " layers coupled by pair terms with more than " +
                        std::to_string(kParetoMaxBlockCombinations) +
                        " candidate combinations; expected at most that many. HINT: use "
                        "SolveMilp, or drop pair terms so that the block splits");
    }
    ks.groups.push_back(Frontier(p, g, pairs_of_layer));
  }
  ks.capacity = p.budget_bits;
  return ks;
}

// The sizes that start the pareto `detail`: groups, combinations, frontier points.
std::string DescribeFrontiers(const PlanProblem& p, const std::vector<Group>& groups,
                              const Knapsack& ks) {
  int64_t n_combination = 0;
  for (const Group& g : groups) n_combination += CombinationCount(p, g);
  size_t n_frontier = 0, min_frontier = SIZE_MAX, max_frontier = 0;
  for (const auto& pts : ks.groups) {
    n_frontier += pts.size();
    min_frontier = std::min(min_frontier, pts.size());
    max_frontier = std::max(max_frontier, pts.size());
  }
  return std::to_string(groups.size()) + " groups, " + std::to_string(n_combination) +
         " combinations, " + std::to_string(n_frontier) + " frontier points (" +
         std::to_string(min_frontier) + "-" + std::to_string(max_frontier) + " per group)";
}

// The plan that takes point pick[g] of every group g.
std::vector<int> DecodePicks(const PlanProblem& p, const std::vector<Group>& groups,
                             const Knapsack& ks, const std::vector<int>& pick) {
  std::vector<int> choice(p.bits.size(), 0);
  for (size_t g = 0; g < groups.size(); ++g) {
    DecodeInto(p, groups[g], ks.groups[g][pick[g]].code, &choice);
  }
  return choice;
}

// Every group at its last frontier point, which is its cheapest.
std::vector<int> CheapestPicks(const Knapsack& ks) {
  std::vector<int> pick(ks.groups.size());
  for (size_t g = 0; g < ks.groups.size(); ++g) pick[g] = static_cast<int>(ks.groups[g].size()) - 1;
  return pick;
}

// Drops the points that cannot fit next to the fewest-bits points of the other groups: no plan
// within the capacity contains them.
void DropPointsThatCannotFit(Knapsack* ks) {
  double min_total = 0;
  for (const auto& pts : ks->groups) min_total += pts[0].bits;
  const double bits_slack = kFilterRelTol * std::fabs(ks->capacity);
  for (auto& pts : ks->groups) {
    const double room = ks->capacity - (min_total - pts[0].bits) + bits_slack;
    while (pts.size() > 1 && pts.back().bits > room) pts.pop_back();
  }
}

// Lagrangian variable fixing: drops every point whose Lagrangian bound exceeds the greedy
// incumbent (no plan containing it can be better); the incumbent's points always stay, so the
// incumbent remains a plan of the smaller knapsack. Returns how many points are left.
size_t FixByLagrangianBound(const Relaxation& relax, Knapsack* ks) {
  // Both sides are sums of O(n_group) terms of at most these magnitudes.
  double magnitude = std::fabs(relax.greedy_cost);
  for (const auto& pts : ks->groups) magnitude += std::fabs(pts[0].cost);
  const double cost_slack = kFilterRelTol * magnitude;
  std::vector<double> best;
  const double dual = LagrangianBound(*ks, relax.lambda, &best);
  size_t n_kept = 0;
  for (size_t g = 0; g < ks->groups.size(); ++g) {
    std::vector<Point>& pts = ks->groups[g];
    std::vector<Point> kept;
    for (int i = 0; i < static_cast<int>(pts.size()); ++i) {
      const double bound_with =
          dual - best[g] + pts[i].cost + relax.lambda * (pts[i].bits - pts[0].bits);
      if (i == relax.greedy[g] || bound_with <= relax.greedy_cost + cost_slack) {
        kept.push_back(pts[i]);
      }
    }
    pts = std::move(kept);
    n_kept += pts.size();
  }
  return n_kept;
}

// The sum of every group's cheapest cost: what the knapsack program's costs are shifted by.
double CheapestTotalCost(const Knapsack& ks) {
  double total = 0;
  for (const auto& pts : ks.groups) total += pts.back().cost;
  return total;
}

// ---------------------------------------------------------------- GLPK programs (both paths)

// Shift and scale of a program's budget row and objective. Raw bit counts of 1e8-1e10 would put
// GLPK's 1e-7 relative tolerances at hundreds of bits, so each slot's bits are taken above its
// fewest and, like the costs, divided by a power of two (exact in double) to make them O(1).
struct Scaling {
  double capacity = 0;  // the budget above the sum of every slot's fewest bits, unscaled
  double bit_scale = 1;
  double cost_scale = 1;
};

// base_bits: the sum of every slot's fewest bits; max_weight: the largest extra bits of one
// option; max_cost: the largest cost magnitude the objective holds.
Scaling MakeScaling(double budget_bits, double base_bits, double max_weight, double max_cost) {
  Scaling s;
  s.capacity = std::max(budget_bits - base_bits, 0.0);
  s.bit_scale = PowerOfTwoScale(std::max(s.capacity, max_weight));
  s.cost_scale = PowerOfTwoScale(max_cost);
  return s;
}

// A program whose binary columns pick exactly one option per slot (a group's frontier points
// in pareto, a layer's candidates in milp) under one budget row.
struct OneOfProgram {
  glpk::Problem lp;
  std::vector<std::vector<int>> cols_of_slot;  // option i of slot s is column cols_of_slot[s][i]
  std::vector<int> budget_cols;                // the budget row, gathered slot by slot
  std::vector<double> budget_coefs;
  double cost_scale = 1;  // the objective is the cost divided by this
};

// Adds a slot: a binary column per option (objective coefficient objective[i]) and the row
// "exactly one of them". Options with more bits than the slot's fewest (`lowest`) enter the
// budget row with their extra bits.
void AddSlot(const std::vector<double>& objective, const std::vector<double>& bits, double lowest,
             double bit_scale, OneOfProgram* prog) {
  std::vector<int> cols;
  for (size_t i = 0; i < bits.size(); ++i) {
    const int col = prog->lp.AddColumn(glpk::ColKind::kBinary, 0, 1, objective[i]);
    cols.push_back(col);
    if (bits[i] > lowest) {
      prog->budget_cols.push_back(col);
      prog->budget_coefs.push_back((bits[i] - lowest) / bit_scale);
    }
  }
  prog->lp.AddRow(cols, std::vector<double>(cols.size(), 1.0), 1.0, 1.0);
  prog->cols_of_slot.push_back(std::move(cols));
}

void AddBudgetRow(const Scaling& s, OneOfProgram* prog) {
  prog->lp.AddRow(prog->budget_cols, prog->budget_coefs, -glpk::kInf, s.capacity / s.bit_scale);
}

// The option GLPK set to 1 in each slot; cut_cols receives their columns, for a no-good cut.
std::vector<int> PickedOptions(const OneOfProgram& prog, const std::vector<double>& x,
                               std::vector<int>* cut_cols) {
  std::vector<int> pick(prog.cols_of_slot.size(), -1);
  for (size_t s = 0; s < pick.size(); ++s) {
    const std::vector<int>& cols = prog.cols_of_slot[s];
    for (size_t i = 0; i < cols.size(); ++i) {
      if (x[cols[i]] == 1.0) {
        HIQ_CHECK(pick[s] < 0);
        pick[s] = static_cast<int>(i);
        cut_cols->push_back(cols[i]);
      }
    }
    HIQ_CHECK(pick[s] >= 0);
  }
  return pick;
}

struct CutSolve {
  glpk::MipResult result;   // of the last GLPK solve
  std::vector<int> choice;  // the plan, within budget; empty if GLPK found none
  int n_cut = 0;            // no-good cuts added
};

// Solves prog in GLPK within what is left of the time limit; choice_of maps the picks to a
// plan. GLPK may accept a plan a hair over budget (integer columns within 1e-5, rows within
// 1e-7): the canonical check catches it and a no-good cut removes exactly that plan, so
// optimality is kept, and GLPK solves again.
CutSolve SolveWithBudgetCuts(
    const char* function, const PlanProblem& p, const SolverOptions& options,
    Clock::time_point start, std::span<const double> warm_start,
    const std::function<std::vector<int>(const std::vector<int>&)>& choice_of, OneOfProgram* prog) {
  glpk::MipOptions mip;
  mip.mip_gap = options.mip_gap;
  mip.verbose = options.verbose;
  mip.warm_start = warm_start;
  CutSolve answer;
  for (;;) {
    mip.time_limit_s = RemainingSeconds(start, options.time_limit_s);
    answer.result = prog->lp.SolveMip(mip);
    const glpk::MipStatus status = answer.result.status;
    if (status == glpk::MipStatus::kInfeasible || status == glpk::MipStatus::kNoSolution) {
      return answer;
    }
    std::vector<int> cut_cols;
    std::vector<int> choice = choice_of(PickedOptions(*prog, answer.result.x, &cut_cols));
    if (BitsUnchecked(p, choice) <= p.budget_bits) {
      answer.choice = std::move(choice);
      return answer;
    }
    if (++answer.n_cut > kMaxBudgetCuts) {
      throw SolverError(std::string(function) +
                        ": GLPK kept returning plans over the budget after " +
                        std::to_string(kMaxBudgetCuts) + " cuts");
    }
    const double n_slot = static_cast<double>(prog->cols_of_slot.size());
    prog->lp.AddRow(cut_cols, std::vector<double>(cut_cols.size(), 1.0), -glpk::kInf, n_slot - 1.0);
  }
}

// The error for a GLPK run that ended without a plan when there is none to fall back on.
SolverError NoPlanError(const char* function, const glpk::MipResult& r,
                        const SolverOptions& options, const std::string& hint) {
  return SolverError(
      std::string(function) + ": GLPK found no plan within the budget (" +
      glpk::MipStatusName(r.status) +
      (r.time_limit_hit ? ", time limit " + Num(options.time_limit_s) + " s" : std::string()) +
      "). HINT: " + hint);
}

std::string CutsNote(int n_cut) {
  return n_cut ? ", " + std::to_string(n_cut) + " budget cuts" : "";
}

// The multiple-choice knapsack as a program: a binary per point, one per group, the budget row.
// Costs are taken above each group's cheapest point, bits above its fewest-bits point.
OneOfProgram KnapsackProgram(const Knapsack& ks) {
  double base_bits = 0, max_weight = 0, max_cost = 0;
  for (const auto& pts : ks.groups) {
    base_bits += pts.front().bits;
    max_weight = std::max(max_weight, pts.back().bits - pts.front().bits);
    max_cost = std::max(max_cost, pts.front().cost - pts.back().cost);
  }
  const Scaling s = MakeScaling(ks.capacity, base_bits, max_weight, max_cost);
  OneOfProgram prog;
  prog.cost_scale = s.cost_scale;
  for (const auto& pts : ks.groups) {
    std::vector<double> objective, bits;
    for (const Point& pt : pts) {
      objective.push_back((pt.cost - pts.back().cost) / s.cost_scale);
      bits.push_back(pt.bits);
    }
    AddSlot(objective, bits, pts.front().bits, s.bit_scale, &prog);
  }
  AddBudgetRow(s, &prog);
  return prog;
}

// ---------------------------------------------------------------- milp steps

// GLPK trusts a warm start, so it must be a plan within the budget.
void CheckWarmStartPlan(const PlanProblem& p, const std::vector<int>& choice) {
  CheckChoice("SolveMilp (warm start)", p, choice);
  if (BitsUnchecked(p, choice) > p.budget_bits) {
    throw SolverError("SolveMilp: the warm start plan has " + Num(BitsUnchecked(p, choice)) +
                      " bits; expected at most the budget " + Num(p.budget_bits));
  }
}

// Bits above each layer's fewest; costs divided by a power of two near the largest magnitude of
// any cost or pair cost.
Scaling MilpScaling(const PlanProblem& p) {
  double base_bits = 0, max_weight = 0, max_cost = 0;
  for (size_t l = 0; l < p.bits.size(); ++l) {
    const auto& b = p.bits[l];
    const double lo = *std::min_element(b.begin(), b.end());
    base_bits += lo;
    max_weight = std::max(max_weight, *std::max_element(b.begin(), b.end()) - lo);
    for (double c : p.cost[l]) max_cost = std::max(max_cost, std::fabs(c));
  }
  for (const auto& pair : p.pairs) {
    for (double c : pair.cost) max_cost = std::max(max_cost, std::fabs(c));
  }
  return MakeScaling(p.budget_bits, base_bits, max_weight, max_cost);
}

// The linearisation of docs/SOLVER.md section 3: the slots are the layers, their options the
// binary x_{l,m}; the continuous y of each pair follow.
struct Linearised {
  OneOfProgram prog;
  std::vector<int> first_y;  // per pair, the column of y_{(l1,0),(l2,0)}; y_{m1,m2} is at
                             // first_y + m1 * K_l2 + m2
};

// The row x_col = sum of y_cols.
void AddMarginalRow(int x_col, const std::vector<int>& y_cols, glpk::Problem* lp) {
  std::vector<int> cols{x_col};
  cols.insert(cols.end(), y_cols.begin(), y_cols.end());
  std::vector<double> coefs{-1.0};
  coefs.resize(cols.size(), 1.0);
  lp->AddRow(cols, coefs, 0.0, 0.0);
}

// y_{(l1,m1),(l2,m2)} >= 0 with row sums x_{l1,m1} and column sums x_{l2,m2}: for binary x with
// one 1 per layer, the only such y is the outer product, i.e. y = x_{l1,m1} x_{l2,m2}. x1, x2
// are the x columns of the pair's layers; returns the column of y_{(l1,0),(l2,0)}.
int AddPairColumns(const PlanProblem::Pair& pair, const std::vector<int>& x1,
                   const std::vector<int>& x2, double cost_scale, glpk::Problem* lp) {
  const int k1 = static_cast<int>(x1.size()), k2 = static_cast<int>(x2.size());
  int first_y = -1;
  for (int m1 = 0; m1 < k1; ++m1) {
    for (int m2 = 0; m2 < k2; ++m2) {
      const int col = lp->AddColumn(glpk::ColKind::kContinuous, 0, glpk::kInf,
                                    pair.cost[m1 * k2 + m2] / cost_scale);
      if (m1 == 0 && m2 == 0) first_y = col;
    }
  }
  for (int m1 = 0; m1 < k1; ++m1) {
    std::vector<int> y_cols;
    for (int m2 = 0; m2 < k2; ++m2) y_cols.push_back(first_y + m1 * k2 + m2);
    AddMarginalRow(x1[m1], y_cols, lp);
  }
  for (int m2 = 0; m2 < k2; ++m2) {
    std::vector<int> y_cols;
    for (int m1 = 0; m1 < k1; ++m1) y_cols.push_back(first_y + m1 * k2 + m2);
    AddMarginalRow(x2[m2], y_cols, lp);
  }
  return first_y;
}

Linearised BuildLinearised(const PlanProblem& p) {
  const Scaling s = MilpScaling(p);
  Linearised milp;
  milp.prog.cost_scale = s.cost_scale;
  for (size_t l = 0; l < p.bits.size(); ++l) {
    const auto& b = p.bits[l];
    std::vector<double> objective;
    for (double c : p.cost[l]) objective.push_back(c / s.cost_scale);
    AddSlot(objective, b, *std::min_element(b.begin(), b.end()), s.bit_scale, &milp.prog);
  }
  for (const PlanProblem::Pair& pair : p.pairs) {
    milp.first_y.push_back(AddPairColumns(pair, milp.prog.cols_of_slot[pair.l1],
                                          milp.prog.cols_of_slot[pair.l2], s.cost_scale,
                                          &milp.prog.lp));
  }
  AddBudgetRow(s, &milp.prog);
  return milp;
}

// A plan as a value per column: its x, and the y (outer products) they imply.
std::vector<double> WarmStartColumns(const PlanProblem& p, const Linearised& milp,
                                     const std::vector<int>& choice) {
  std::vector<double> warm(milp.prog.lp.num_columns(), 0.0);
  for (size_t l = 0; l < choice.size(); ++l) warm[milp.prog.cols_of_slot[l][choice[l]]] = 1.0;
  for (size_t i = 0; i < p.pairs.size(); ++i) {
    const PlanProblem::Pair& pair = p.pairs[i];
    const int k2 = static_cast<int>(p.bits[pair.l2].size());
    warm[milp.first_y[i] + choice[pair.l1] * k2 + choice[pair.l2]] = 1.0;
  }
  return warm;
}

}  // namespace

// ---------------------------------------------------------------- public: checks

void ValidatePlanProblem(const PlanProblem& p) {
  const char* fn = "ValidatePlanProblem: ";
  const size_t n_layer = p.bits.size();
  if (n_layer == 0) throw SolverError(std::string(fn) + "the problem has no layers");
  if (p.cost.size() != n_layer || p.block_of_layer.size() != n_layer) {
    throw SolverError(std::string(fn) + "bits has " + std::to_string(n_layer) + " layers, cost " +
                      std::to_string(p.cost.size()) + ", block_of_layer " +
                      std::to_string(p.block_of_layer.size()) + "; expected the same number");
  }
  for (size_t l = 0; l < n_layer; ++l) {
    const std::string layer = "layer " + std::to_string(l);
    if (p.bits[l].empty()) throw SolverError(fn + layer + " has no candidates");
    if (p.cost[l].size() != p.bits[l].size()) {
      throw SolverError(fn + layer + " has " + std::to_string(p.bits[l].size()) + " bits and " +
                        std::to_string(p.cost[l].size()) +
                        " costs; expected one of each per "
                        "candidate");
    }
    if (p.block_of_layer[l] < 0) {
      throw SolverError(fn + layer + " is in block " + std::to_string(p.block_of_layer[l]) +
                        "; expected a block id >= 0");
    }
    for (size_t m = 0; m < p.bits[l].size(); ++m) {
      if (!std::isfinite(p.bits[l][m]) || p.bits[l][m] < 0) {
        throw SolverError(fn + Entry("bits", l, m) + " is " + Num(p.bits[l][m]) +
                          "; expected a finite number >= 0");
      }
      if (!std::isfinite(p.cost[l][m])) {
        throw SolverError(fn + Entry("cost", l, m) + " is " + Num(p.cost[l][m]) +
                          "; expected a finite number");
      }
    }
  }
  std::map<std::pair<int, int>, size_t> seen;
  for (size_t i = 0; i < p.pairs.size(); ++i) {
    const PlanProblem::Pair& pair = p.pairs[i];
    const std::string name = "pair " + std::to_string(i) + " (layers " + std::to_string(pair.l1) +
                             ", " + std::to_string(pair.l2) + ")";
    const int n = static_cast<int>(n_layer);
    if (pair.l1 < 0 || pair.l2 < 0 || pair.l1 >= n || pair.l2 >= n || pair.l1 >= pair.l2) {
      throw SolverError(fn + name + " is invalid; expected two layers 0 <= l1 < l2 < " +
                        std::to_string(n));
    }
    if (p.block_of_layer[pair.l1] != p.block_of_layer[pair.l2]) {
      throw SolverError(fn + name + " joins blocks " + std::to_string(p.block_of_layer[pair.l1]) +
                        " and " + std::to_string(p.block_of_layer[pair.l2]) +
                        "; pair terms exist only within a block (DESIGN.md 1.3)");
    }
    if (auto [it, added] = seen.emplace(std::make_pair(pair.l1, pair.l2), i); !added) {
      throw SolverError(fn + name + " repeats pair " + std::to_string(it->second) +
                        "; expected at most one pair per two layers");
    }
    const size_t k1 = p.bits[pair.l1].size(), k2 = p.bits[pair.l2].size();
    if (pair.cost.size() != k1 * k2) {
      throw SolverError(fn + name + " has " + std::to_string(pair.cost.size()) +
                        " costs; expected " + std::to_string(k1) + " x " + std::to_string(k2) +
                        " = " + std::to_string(k1 * k2));
    }
    for (size_t k = 0; k < pair.cost.size(); ++k) {
      if (!std::isfinite(pair.cost[k])) {
        throw SolverError(fn + name + " cost[" + std::to_string(k) + "] is " + Num(pair.cost[k]) +
                          "; expected a finite number");
      }
    }
  }
  if (!std::isfinite(p.budget_bits)) {
    throw SolverError(std::string(fn) + "budget_bits is " + Num(p.budget_bits) +
                      "; expected a finite number of bits");
  }
  if (!(p.n_weights > 0) || !std::isfinite(p.n_weights)) {
    throw SolverError(std::string(fn) + "n_weights is " + Num(p.n_weights) +
                      "; expected the (positive) number of quantized weights");
  }
}

double Objective(const PlanProblem& problem, const std::vector<int>& choice) {
  CheckChoice("Objective", problem, choice);
  return ObjectiveUnchecked(problem, choice);
}

double Bits(const PlanProblem& problem, const std::vector<int>& choice) {
  CheckChoice("Bits", problem, choice);
  return BitsUnchecked(problem, choice);
}

// ---------------------------------------------------------------- public: solvers

PlanSolution SolveBruteForce(const PlanProblem& p) {
  const auto start = Clock::now();
  ValidatePlanProblem(p);
  double n_assign = 1;
  for (const auto& b : p.bits) n_assign *= static_cast<double>(b.size());
  if (n_assign > kBruteForceMaxAssignments) {
    throw SolverError("SolveBruteForce: the problem has " + Fixed(n_assign, 0) +
                      " assignments; expected at most " + Fixed(kBruteForceMaxAssignments, 0) +
                      ". HINT: use SolvePareto, which is exact at any size");
  }
  CheckBudgetFeasible("SolveBruteForce", p);
  const size_t n_layer = p.bits.size();
  std::vector<int> choice(n_layer, 0), best;
  double best_objective = 0;
  // Odometer with the last layer fastest: assignments come in lexicographic order, and only a
  // strictly better one replaces the incumbent, so ties go to the smallest.
  for (;;) {
    if (BitsUnchecked(p, choice) <= p.budget_bits) {
      const double objective = ObjectiveUnchecked(p, choice);
      if (best.empty() || objective < best_objective) {
        best = choice;
        best_objective = objective;
      }
    }
    size_t l = n_layer;
    while (l > 0 && ++choice[l - 1] == static_cast<int>(p.bits[l - 1].size())) {
      choice[--l] = 0;
    }
    if (l == 0) break;
  }
  PlanSolution s;
  s.choice = best;
  s.objective = s.bound = best_objective;
  s.bits = BitsUnchecked(p, best);
  s.status = "optimal";
  s.method = "brute_force";
  s.detail = Fixed(n_assign, 0) + " assignments";
  s.seconds = Seconds(start);
  return s;
}

PlanSolution SolvePareto(const PlanProblem& p, const SolverOptions& options) {
  const auto start = Clock::now();
  ValidatePlanProblem(p);
  CheckOptions("SolvePareto", options);
  CheckBudgetFeasible("SolvePareto", p);
  const std::vector<Group> groups = MakeGroups(p);
  Knapsack ks = FrontierKnapsack(p, groups);
  std::string detail = DescribeFrontiers(p, groups, ks);
  auto choice_of = [&](const std::vector<int>& pick) { return DecodePicks(p, groups, ks, pick); };
  auto finish = [&](std::vector<int> choice, std::string status, double bound,
                    const std::string& how) {
    return MakeSolution(p, std::move(choice), std::move(status), bound, "pareto",
                        detail + "; " + how, start);
  };

  // Cheap cases first (docs/SOLVER.md 2.4): a budget that does not bind, then points that
  // cannot fit; the LP bound and greedy incumbent then fix out points, and GLPK gets the rest.
  std::vector<int> cheapest = choice_of(CheapestPicks(ks));
  if (BitsUnchecked(p, cheapest) <= p.budget_bits) {
    return finish(std::move(cheapest), "optimal", 0, "budget not binding");
  }
  DropPointsThatCannotFit(&ks);
  const Relaxation relax = SolveRelaxation(ks);
  std::vector<int> incumbent = choice_of(relax.greedy);
  const bool have_incumbent = BitsUnchecked(p, incumbent) <= p.budget_bits;
  if (have_incumbent) {
    const size_t n_kept = FixByLagrangianBound(relax, &ks);
    detail += ", " + std::to_string(n_kept) + " left after the Lagrangian bound";
    if (n_kept == ks.groups.size()) {
      return finish(std::move(incumbent), "optimal", relax.lp_bound,
                    "greedy incumbent proven optimal by the bound");
    }
  }

  OneOfProgram mckp = KnapsackProgram(ks);
  const CutSolve solved =
      SolveWithBudgetCuts("SolvePareto", p, options, start, {}, choice_of, &mckp);
  const glpk::MipResult& r = solved.result;
  if (solved.choice.empty()) {
    if (!have_incumbent) throw NoPlanError("SolvePareto", r, options, "raise time_limit_s");
    return finish(std::move(incumbent), StatusOf(r), relax.lp_bound,
                  "GLPK found no better plan than the greedy");
  }
  const double bound = r.bound * mckp.cost_scale + CheapestTotalCost(ks);
  return finish(solved.choice, StatusOf(r), std::max(bound, relax.lp_bound),
                "GLPK " + StatusOf(r) + " on " + std::to_string(mckp.lp.num_columns()) +
                    " points in " + Fixed(r.seconds, 3) + " s" + CutsNote(solved.n_cut));
}

PlanSolution SolveMilp(const PlanProblem& p, const SolverOptions& options,
                       const PlanSolution* warm_start) {
  const auto start = Clock::now();
  ValidatePlanProblem(p);
  CheckOptions("SolveMilp", options);
  CheckBudgetFeasible("SolveMilp", p);
  if (warm_start != nullptr) CheckWarmStartPlan(p, warm_start->choice);
  Linearised milp = BuildLinearised(p);
  const std::string detail = std::to_string(p.bits.size()) + " layers, " +
                             std::to_string(p.pairs.size()) +
                             " pairs: " + std::to_string(milp.prog.lp.num_columns()) +
                             " columns, " + std::to_string(milp.prog.lp.num_rows()) + " rows";
  const std::vector<double> warm =
      warm_start != nullptr ? WarmStartColumns(p, milp, warm_start->choice) : std::vector<double>();
  auto finish = [&](std::vector<int> choice, std::string status, double bound,
                    const std::string& how) {
    return MakeSolution(p, std::move(choice), std::move(status), bound, "milp", detail + "; " + how,
                        start);
  };

  // The slots are the layers, so GLPK's picks are the plan itself.
  auto choice_of = [](const std::vector<int>& pick) { return pick; };
  const CutSolve solved =
      SolveWithBudgetCuts("SolveMilp", p, options, start, warm, choice_of, &milp.prog);
  const glpk::MipResult& r = solved.result;
  const double bound = r.bound == -glpk::kInf ? -glpk::kInf : r.bound * milp.prog.cost_scale;
  if (solved.choice.empty()) {
    if (warm_start == nullptr) {
      throw NoPlanError("SolveMilp", r, options,
                        "raise time_limit_s, or pass SolvePareto's plan as warm start");
    }
    return finish(warm_start->choice, StatusOf(r), bound,
                  "GLPK found no plan before the time limit; the warm start is returned");
  }
  return finish(solved.choice, StatusOf(r), bound,
                "GLPK " + StatusOf(r) + " in " + Fixed(r.seconds, 3) + " s" +
                    (r.warm_start_used ? " (warm start accepted)" : "") + CutsNote(solved.n_cut));
}

}  // namespace hiq
