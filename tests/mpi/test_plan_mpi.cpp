// The plan stage under mpiexec (2, 3 and 4 ranks). Every statistic is computed by the rank that
// owns the layer and every result is broadcast from one place, so the P-rank pipeline must give
// bit for bit what a one-process pipeline (over MPI_COMM_SELF, in the same job) gives.
#include <gtest/gtest.h>

#include "hiq/config/config.h"
#include "hiq/stages/calibration.h"
#include "hiq/stages/cost.h"
#include "hiq/stages/fisher.h"
#include "hiq/stages/memory.h"  // GptqCandidateBytes
#include "hiq/stages/plan.h"
#include "test_util.h"

namespace hiq {
namespace {

// A small run: it exercises every path while staying seconds long on 2 cores.
RunConfig SmallConfig() {
  return LoadConfig(
      test::SourceDir() / "configs" / "stories260k-w2.yaml",
      {"calibration.fisher.n_sequences=6", "calibration.fisher.seq_len=48",
       "calibration.cost.n_sequences=4", "calibration.cost.seq_len=40",
       "calibration.check.n_sequences=4", "calibration.check.seq_len=40",
       "quant.ratios=[0.05, 0.1, 0.2]", "cost.refine=1", "cost.local_fit_switches=5"});
}

struct StageRun {
  explicit StageRun(const Comm& comm, const RunConfig& config)
      : checkpoint(config.model.path), pipeline(LoadPipeline(comm, checkpoint)) {
    const ModelVocab vocab = ReadModelVocab(config.model.path / "config.json");
    fisher_set = BuildSampleSet(config.calibration.fisher, "fisher", pipeline,
                                config.model.tokenizer, vocab);
    cost_set =
        BuildSampleSet(config.calibration.cost, "cost", pipeline, config.model.tokenizer, vocab);
    fisher = ComputeFisher(pipeline, fisher_set);
    const QuantSpec spec{config.quant.bits_low, config.quant.bits_high, config.quant.group_size};
    model = std::make_unique<CostModel>(
        pipeline, spec, config.quant.ratios,
        ScoreChannels(pipeline.stage(), fisher, config.quant.score, spec));
  }
  Checkpoint checkpoint;
  Pipeline pipeline;
  std::vector<Sequence> fisher_set, cost_set;
  FisherBlocks fisher;
  std::unique_ptr<CostModel> model;
};

TEST(PlanMpi, SampleSetsAndFisherAreTheSameAsInOneProcess) {
  const RunConfig config = SmallConfig();
  StageRun world(Comm::World(), config);
  StageRun self(Comm::Self(), config);
  ASSERT_EQ(world.fisher_set.size(), self.fisher_set.size());
  for (size_t i = 0; i < world.fisher_set.size(); ++i) {
    EXPECT_EQ(world.fisher_set[i].tokens, self.fisher_set[i].tokens);
  }
  for (size_t i = 0; i < world.cost_set.size(); ++i) {
    EXPECT_EQ(world.cost_set[i].tokens, self.cost_set[i].tokens) << "generated sequence " << i;
  }
  // This rank's Fisher blocks against the same blocks of the one-process run.
  const int begin = world.pipeline.stage().block_begin;
  for (size_t b = 0; b < world.fisher.size(); ++b) {
    for (size_t k = 0; k < kLinears.size(); ++k) {
      const Matrix<float>& a = world.fisher[b][k];
      const Matrix<float>& e = self.fisher[static_cast<size_t>(begin) + b][k];
      EXPECT_TRUE(std::equal(a.data(), a.data() + a.size(), e.data()))
          << "block " << begin + static_cast<int>(b) << " " << LinearName(kLinears[k]);
    }
  }
}

void ExpectSameTerms(const CostTerms& a, const CostTerms& b, const char* what) {
  EXPECT_EQ(a.centre_loss, b.centre_loss) << what;
  EXPECT_EQ(a.diag, b.diag) << what;
  ASSERT_EQ(a.pairs.size(), b.pairs.size()) << what;
  for (size_t i = 0; i < a.pairs.size(); ++i) EXPECT_EQ(a.pairs[i].cost, b.pairs[i].cost) << what;
}

TEST(PlanMpi, CostTermsOfEveryEstimatorAreTheSameAsInOneProcess) {
  const RunConfig config = SmallConfig();
  StageRun world(Comm::World(), config);
  StageRun self(Comm::Self(), config);
  const Plan centre = world.model->FixedPlan(1);
  ExpectSameTerms(world.model->Measure(CostMode::kLoss, world.cost_set, centre, true, 0),
                  self.model->Measure(CostMode::kLoss, self.cost_set, centre, true, 0),
                  "loss around the plan, with pairs");
  ExpectSameTerms(world.model->Measure(CostMode::kLoss, world.cost_set, std::nullopt, false, 0),
                  self.model->Measure(CostMode::kLoss, self.cost_set, std::nullopt, false, 0),
                  "loss around full precision");
  ExpectSameTerms(world.model->Measure(CostMode::kLocal, world.cost_set, centre, false, 5),
                  self.model->Measure(CostMode::kLocal, self.cost_set, centre, false, 5), "local");
  ExpectSameTerms(world.model->Measure(CostMode::kFisher, world.cost_set, centre, true, 0),
                  self.model->Measure(CostMode::kFisher, self.cost_set, centre, true, 0), "fisher");
}

// cost.candidates: gptq. The Hessians come from the rank that owns the layer, so the terms are
// the one-process terms; and GPTQ's error compensation makes switching a layer to a candidate
// cost less in total than round-to-nearest does, around full precision as around a plan. The
// Hessians take 32 x 64 wikitext tokens (2048 rows, against n_in <= 172): the small config's
// Fisher set (288 rows) is too few, and GPTQ fitted on it does worse than RTN on the cost set.
// Once every candidate has been asked for, a rank holds what the memory account predicts.
TEST(PlanMpi, GptqCandidatesGiveTheOneProcessTermsCostLessThanRtnAndHoldTheAccountedBytes) {
  const RunConfig config = SmallConfig();
  StageRun world(Comm::World(), config);
  StageRun self(Comm::Self(), config);
  SampleSetConfig hessian = config.calibration.fisher;
  hessian.n_sequences = 32;
  hessian.seq_len = 64;
  const ModelVocab vocab = ReadModelVocab(config.model.path / "config.json");
  const std::vector<Sequence> world_set =
      BuildSampleSet(hessian, "hessian", world.pipeline, config.model.tokenizer, vocab);
  const std::vector<Sequence> self_set =
      BuildSampleSet(hessian, "hessian", self.pipeline, config.model.tokenizer, vocab);
  const Plan centre = world.model->FixedPlan(1);
  const CostTerms rtn_fp =
      world.model->Measure(CostMode::kLoss, world.cost_set, std::nullopt, false, 0);
  const CostTerms rtn_plan =
      world.model->Measure(CostMode::kLoss, world.cost_set, centre, false, 0);
  world.model->UseGptqCandidates(world_set);
  self.model->UseGptqCandidates(self_set);
  const CostTerms gptq_fp =
      world.model->Measure(CostMode::kLoss, world.cost_set, std::nullopt, false, 0);
  ExpectSameTerms(gptq_fp,
                  self.model->Measure(CostMode::kLoss, self.cost_set, std::nullopt, false, 0),
                  "gptq candidates around full precision");
  const CostTerms gptq_plan =
      world.model->Measure(CostMode::kLoss, world.cost_set, centre, true, 0);
  ExpectSameTerms(gptq_plan, self.model->Measure(CostMode::kLoss, self.cost_set, centre, true, 0),
                  "gptq candidates around the plan, with pairs");
  auto total = [](const CostTerms& t) {
    double sum = 0;
    for (const auto& layer : t.diag) {
      for (double d : layer) sum += d;
    }
    return sum;
  };
  EXPECT_LT(total(gptq_fp), total(rtn_fp));
  EXPECT_GT(total(gptq_fp), 0.0) << "quantizing still costs loss";
  // Around the plan the centre itself is quantized by GPTQ: a lower loss than RTN's centre.
  EXPECT_LT(gptq_plan.centre_loss, rtn_plan.centre_loss);
  const Stage<float>& stage = world.pipeline.stage();
  const int64_t n_local = static_cast<int64_t>(stage.blocks.size());
  EXPECT_GT(world.model->GptqBytes(), 0);
  EXPECT_EQ(world.model->GptqBytes(), GptqCandidateBytes(stage.config, n_local, config.quant));
}

TEST(PlanMpi, ASwitchFromTheCachedBlockInputEqualsTheWholeForward) {
  const RunConfig config = SmallConfig();
  StageRun world(Comm::World(), config);
  const Plan centre = world.model->FixedPlan(1);
  const CostTerms terms = world.model->Measure(CostMode::kLoss, world.cost_set, centre, true, 0);
  // Layer 9 (block 1, v_proj) to candidate 2, layer 12 (block 1, up_proj) to candidate 0.
  Plan one = centre, both = centre, other = centre;
  one[9] = 2;
  other[12] = 0;
  both[9] = 2;
  both[12] = 0;
  const std::vector<double> loss =
      world.model->MeasurePlans(world.cost_set, {centre, one, other, both});
  EXPECT_EQ(terms.centre_loss, loss[0]);
  EXPECT_NEAR(terms.diag[9][2], loss[1] - loss[0], 1e-12);
  EXPECT_NEAR(terms.diag[12][0], loss[2] - loss[0], 1e-12);
  EXPECT_EQ(terms.diag[9][1], 0.0) << "the centre's own candidate costs nothing";
  const PlanProblem::Pair* pair = nullptr;
  for (const auto& p : terms.pairs) {
    if (p.l1 == 9 && p.l2 == 12) pair = &p;
  }
  ASSERT_NE(pair, nullptr);
  EXPECT_NEAR(pair->cost[2 * 3 + 0], loss[3] - loss[1] - loss[2] + loss[0], 1e-12);
}

TEST(PlanMpi, TheWholeStageGivesTheSamePlanAsOneProcess) {
  const RunConfig config = SmallConfig();
  Checkpoint checkpoint(config.model.path);
  Pipeline world = LoadPipeline(Comm::World(), checkpoint);
  Pipeline self = LoadPipeline(Comm::Self(), checkpoint);
  const PlanReport a = RunPlanStage(config, world, checkpoint, nullptr);
  const PlanReport b = RunPlanStage(config, self, checkpoint, nullptr);
  EXPECT_EQ(a.choice, b.choice);
  EXPECT_EQ(a.predicted_dloss, b.predicted_dloss);
  EXPECT_EQ(a.measured_dloss, b.measured_dloss);
  EXPECT_EQ(a.fixed_dloss, b.fixed_dloss);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l)
    EXPECT_EQ(a.layers[l].channels, b.layers[l].channels);
  EXPECT_LE(a.avg_bits, a.budget_avg_bits);
}

}  // namespace
}  // namespace hiq
