// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The migration engines' parts that run without a VM. The convergence
 * policy walks a table of migrations, each a named row: the limits, the
 * rounds as measured (dirty MiB, bandwidth, duration, elapsed time), and
 * the decision expected after each round. The fault statistics are
 * driven by hand and by two threads racing the way the destination's
 * fault thread and receivers do. The phase table is walked along every
 * path an engine takes and against the hand-offs it must refuse; the
 * worker shape is stopped both ways an engine thread sleeps. The
 * placement plan walks a table of policies over a two-node host like the
 * nested one.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "check-migrate"
#include "migrate/internal.h"
#include "tests/testutil.h"
#include "util/util.h"

/* ---- the convergence policy ---- */

/* One round as measured: MiB dirtied, MiB/s sent, seconds it took, and
 * seconds since the migration started when it ended. */
struct rin {
	double dirty_mib, bw_mibs, dur_s, at_s;
};

#define R(dirty, bw, at) \
	{ .dirty_mib = dirty, .bw_mibs = bw, .dur_s = 1.0, .at_s = at }
#define ROW(name_, mode_, pc_, limit_, max_, dl_, want_, why_) \
	.name = name_, .mode = mode_, .can_postcopy = pc_, .limit_ms = limit_, \
	.max_rounds = max_, .deadline_s = dl_, .want = want_, .why = why_
#define MAX_LISTED 8

struct policy_row {
	const char *name;
	enum mig_mode mode;
	bool can_postcopy;
	uint64_t limit_ms;	/* 0: the default */
	uint32_t max_rounds;	/* 0: the default */
	uint32_t deadline_s;	/* 0: the default */
	/* One letter per round: Round, Switchover, Postcopy, Cancel. Every
	 * letter but the last is R. Empty: only mig_policy_begin() runs. */
	const char *want;
	enum mig_reason why;	/* of the last decision */
	/* The rounds; when want is longer, the last one listed repeats,
	 * one duration later each time. */
	struct rin r[MAX_LISTED];
	bool discard_early;	/* the destination drops early (FEAT) */
	bool check;		/* the last round's prediction is: */
	double pred_ms, rate_mibs;
};

static const struct policy_row rows[] = {
	/* precopy */
	{ ROW("precopy_fits_after_round0",
	      MIG_MODE_PRECOPY, true, 0, 0, 0, "S", MIG_WHY_FITS),
	  .r = { R(10, 1000, 1) },
	  .check = true, .pred_ms = 10, .rate_mibs = 10 },
	{ ROW("precopy_converges_in_three_rounds",
	      MIG_MODE_PRECOPY, true, 0, 0, 0, "RRS", MIG_WHY_FITS),
	  .r = { R(1000, 1000, 1), R(500, 1000, 2), R(200, 1000, 3) } },
	{ ROW("precopy_limit_exactly_met",
	      MIG_MODE_PRECOPY, false, 250, 0, 0, "S", MIG_WHY_FITS),
	  .r = { R(256, 1024, 1) },
	  .check = true, .pred_ms = 250, .rate_mibs = 256 },
	{ ROW("precopy_limit_just_missed",
	      MIG_MODE_PRECOPY, false, 250, 2, 0, "RC", MIG_WHY_MAX_ROUNDS),
	  .r = { R(257, 1024, 1) } },
	{ ROW("precopy_cancel_at_max_rounds",
	      MIG_MODE_PRECOPY, false, 300, 3, 0, "RRC", MIG_WHY_MAX_ROUNDS),
	  .r = { R(1000, 100, 1) },
	  .check = true, .pred_ms = 10000, .rate_mibs = 1000 },
	{ ROW("precopy_max_rounds_one",
	      MIG_MODE_PRECOPY, false, 300, 1, 0, "C", MIG_WHY_MAX_ROUNDS),
	  .r = { R(1000, 100, 1) } },
	{ ROW("precopy_cancel_at_deadline",
	      MIG_MODE_PRECOPY, false, 300, 0, 10, "RRC", MIG_WHY_DEADLINE),
	  .r = { R(1000, 100, 4), R(1000, 100, 9.999), R(1000, 100, 10) } },
	{ ROW("precopy_never_switches_to_postcopy",
	      MIG_MODE_PRECOPY, true, 300, 0, 0, "RRRRRRRR", MIG_WHY_CONVERGING),
	  .r = { R(1000, 100, 1) } },
	{ ROW("precopy_stall_still_converges",
	      MIG_MODE_PRECOPY, true, 300, 0, 0, "RRRRRS", MIG_WHY_FITS),
	  .r = { R(1000, 100, 1), R(1000, 100, 2), R(1000, 100, 3),
		 R(1000, 100, 4), R(1000, 100, 5), R(10, 100, 6) } },
	/* measurements at their edges */
	{ ROW("zero_dirty_fits",
	      MIG_MODE_PRECOPY, false, 300, 0, 0, "S", MIG_WHY_FITS),
	  .r = { R(0, 1000, 1) },
	  .check = true, .pred_ms = 0, .rate_mibs = 0 },
	{ ROW("zero_bandwidth_never_fits",
	      MIG_MODE_PRECOPY, false, 300, 0, 0, "RS", MIG_WHY_FITS),
	  .r = { R(100, 0, 1), R(10, 1000, 2) } },
	{ ROW("zero_bandwidth_zero_dirty_predicts_1e9",
	      MIG_MODE_PRECOPY, false, 300, 2, 0, "RC", MIG_WHY_MAX_ROUNDS),
	  .r = { R(0, 0, 1) },
	  .check = true, .pred_ms = 1e9, .rate_mibs = 0 },
	{ ROW("zero_duration_rate_floor",
	      MIG_MODE_PRECOPY, false, 300, 0, 0, "S", MIG_WHY_FITS),
	  .r = { { .dirty_mib = 1, .bw_mibs = 1000 } },
	  .check = true, .pred_ms = 1, .rate_mibs = 1e6 },
	{ ROW("defaults_limit_300ms",
	      MIG_MODE_PRECOPY, false, 0, 0, 0, "RS", MIG_WHY_FITS),
	  .r = { R(301, 1000, 1), R(300, 1000, 2) } },
	{ ROW("defaults_max_rounds_30",
	      MIG_MODE_PRECOPY, false, 0, 0, 0,
	      "RRRRRRRRRRRRRRRRRRRRRRRRRRRRRC", MIG_WHY_MAX_ROUNDS),
	  .r = { R(1000, 100, 1) } },
	{ ROW("defaults_deadline_120s",
	      MIG_MODE_PRECOPY, false, 0, 0, 0, "RRC", MIG_WHY_DEADLINE),
	  .r = { R(1000, 100, 60), R(1000, 100, 119.9), R(1000, 100, 120) } },
	/* auto, with postcopy at hand: the switchover of least downtime;
	 * postcopy's costs 10 ms + 0.768 ms per MiB dirtied (its DISCARD) */
	{ ROW("auto_fits_stays_precopy",
	      MIG_MODE_AUTO, true, 0, 0, 0, "S", MIG_WHY_FITS),
	  .r = { R(10, 1000, 1) } },
	{ ROW("auto_converging_rounds_then_precopy",
	      MIG_MODE_AUTO, true, 300, 0, 0, "RS", MIG_WHY_FITS),
	  /* 100 ms, postcopy's 87 ms: one more round, 5 ms against 14 */
	  .r = { R(100, 1000, 1), R(5, 1000, 2) } },
	{ ROW("auto_rounds_while_they_converge",
	      MIG_MODE_AUTO, true, 300, 0, 0, "RRS", MIG_WHY_FITS),
	  .r = { R(300, 1000, 1), R(100, 1000, 2), R(8, 1000, 3) } },
	{ ROW("auto_fits_the_limit_but_postcopy_is_cheaper",
	      MIG_MODE_AUTO, true, 300, 0, 0, "P", MIG_WHY_CHEAPER),
	  /* 200 ms fits 300, postcopy's 164 ms, and 800 MiB/s dirtied
	   * against 1000 sent: the rounds no longer converge */
	  .r = { { .dirty_mib = 200, .bw_mibs = 1000, .dur_s = 0.25,
		   .at_s = 1 } },
	  .check = true, .pred_ms = 200, .rate_mibs = 800 },
	{ ROW("auto_dirtying_faster_than_sent_goes_postcopy",
	      MIG_MODE_AUTO, true, 300, 0, 0, "P", MIG_WHY_CHEAPER),
	  .r = { R(1000, 100, 1) } },
	{ ROW("auto_converging_then_not",
	      MIG_MODE_AUTO, true, 300, 0, 0, "RP", MIG_WHY_CHEAPER),
	  .r = { R(50, 1000, 1), R(900, 1000, 2) } },
	/* 40 ms fits postcopy's 40.7 (10 ms + 10240 pages' DISCARD)... */
	{ ROW("auto_discard_paused_precopy_fits",
	      MIG_MODE_AUTO, true, 300, 0, 0, "S", MIG_WHY_FITS),
	  .r = { R(40, 1000, 1) } },
	/* ... but with the early DISCARD round, the pause drops only the
	 * 314 pages written during it (10.9 ms): another round, 5 ms */
	{ ROW("auto_discard_early_one_more_round",
	      MIG_MODE_AUTO, true, 300, 0, 0, "RS", MIG_WHY_FITS),
	  .r = { R(40, 1000, 1), R(5, 1000, 2) }, .discard_early = true },
	/* rounds that shrink to half of the one before no longer pay */
	{ ROW("auto_half_shrink_goes_postcopy",
	      MIG_MODE_AUTO, true, 300, 0, 0, "P", MIG_WHY_CHEAPER),
	  .r = { R(500, 1000, 1) } },
	{ ROW("auto_limit_below_postcopy_cost",
	      MIG_MODE_AUTO, true, 5, 0, 0, "RS", MIG_WHY_FITS),
	  .r = { R(8, 1000, 1), R(4, 1000, 2) } },
	{ ROW("auto_max_rounds_to_postcopy",
	      MIG_MODE_AUTO, true, 300, 2, 0, "RP", MIG_WHY_MAX_ROUNDS),
	  .r = { R(50, 1000, 1), R(50, 1000, 2) } },
	{ ROW("auto_deadline_to_postcopy",
	      MIG_MODE_AUTO, true, 300, 0, 5, "RP", MIG_WHY_DEADLINE),
	  .r = { R(50, 1000, 2), R(50, 1000, 5) } },
	{ ROW("auto_late_says_late",
	      MIG_MODE_AUTO, true, 300, 1, 0, "P", MIG_WHY_MAX_ROUNDS),
	  .r = { R(1000, 100, 1) } },
	{ ROW("auto_without_postcopy_cancels",
	      MIG_MODE_AUTO, false, 300, 5, 0, "RRRRC", MIG_WHY_MAX_ROUNDS),
	  .r = { R(1000, 100, 1) } },
	{ ROW("auto_without_postcopy_deadline",
	      MIG_MODE_AUTO, false, 300, 0, 3, "RRC", MIG_WHY_DEADLINE),
	  .r = { R(1000, 100, 1) } },
	{ ROW("auto_zero_bandwidth_goes_postcopy",
	      MIG_MODE_AUTO, true, 300, 0, 0, "P", MIG_WHY_CHEAPER),
	  .r = { R(10, 0, 1) },
	  .check = true, .pred_ms = 1e9, .rate_mibs = 10 },
	/* hybrid and postcopy */
	{ ROW("hybrid_postcopy_after_round0",
	      MIG_MODE_HYBRID, true, 300, 0, 0, "P", MIG_WHY_MODE),
	  .r = { R(1000, 100, 1) },
	  .check = true, .pred_ms = 10000, .rate_mibs = 1000 },
	{ ROW("hybrid_postcopy_even_when_it_fits",
	      MIG_MODE_HYBRID, true, 300, 0, 0, "P", MIG_WHY_MODE),
	  .r = { R(1, 1000, 1) } },
	{ ROW("hybrid_postcopy_past_the_deadline",
	      MIG_MODE_HYBRID, true, 300, 1, 1, "P", MIG_WHY_MODE),
	  .r = { R(1000, 100, 500) } },
	{ ROW("postcopy_at_once",
	      MIG_MODE_POSTCOPY, true, 0, 0, 0, "", MIG_WHY_MODE),
	  .r = { { .dirty_mib = 0 } } },
};

static enum mig_decision letter(char c)
{
	switch (c) {
	case 'S':
		return MIG_DECIDE_SWITCHOVER;
	case 'P':
		return MIG_DECIDE_POSTCOPY;
	case 'C':
		return MIG_DECIDE_CANCEL;
	default:
		return MIG_DECIDE_ROUND;
	}
}

/* Round @i of row @t: a listed one, or the last listed repeated. */
static struct mig_round_input round_of(const struct policy_row *t, size_t i)
{
	size_t listed = 0, k;
	struct rin r;

	while (listed < MAX_LISTED &&
	       (listed == 0 || t->r[listed].bw_mibs || t->r[listed].dirty_mib ||
		t->r[listed].dur_s || t->r[listed].at_s))
		listed++;
	k = i < listed ? i : listed - 1;
	r = t->r[k];
	if (i > k)
		r.at_s += (i - k) * r.dur_s;
	return (struct mig_round_input){
		.round = i,
		.dirty_bytes = r.dirty_mib * UT_MiB,
		.bandwidth_mibs = r.bw_mibs,
		.duration_s = r.dur_s,
		.elapsed_ns = (uint64_t)llround(r.at_s * 1e9),
	};
}

static void policy_init_row(const struct policy_row *t, struct mig_policy *pol)
{
	struct mig_source_params p = {
		.mode = t->mode,
		.downtime_limit_ms = t->limit_ms,
		.max_rounds = t->max_rounds,
		.deadline_s = t->deadline_s,
	};

	mig_policy_init(pol, &p, t->can_postcopy);
	pol->discard_early = t->discard_early;
}

START_TEST(policy_table)
{
	const struct policy_row *t = &rows[_i];
	struct mig_policy_state ps = { 0 };
	size_t n = strlen(t->want);
	struct mig_policy pol;
	struct mig_verdict v;

	policy_init_row(t, &pol);
	v = mig_policy_begin(&pol);
	if (n == 0) {
		ck_assert_msg(v.decision == MIG_DECIDE_POSTCOPY &&
			      v.reason == t->why, "%s: begin said %s (%s)",
			      t->name, mig_decision_name(v.decision),
			      mig_reason_name(v.reason));
		return;
	}
	ck_assert_msg(v.decision == MIG_DECIDE_ROUND,
		      "%s: begin said %s", t->name,
		      mig_decision_name(v.decision));
	for (size_t i = 0; i < n; i++) {
		struct mig_round_input in = round_of(t, i);

		v = mig_policy_next(&pol, &ps, &in);
		ck_assert_msg(v.decision == letter(t->want[i]),
			      "%s: round %zu: %s (%s), expected %c", t->name,
			      i, mig_decision_name(v.decision),
			      mig_reason_name(v.reason), t->want[i]);
	}
	ck_assert_msg(v.reason == t->why, "%s: the last decision's reason is "
		      "%s, expected %s", t->name, mig_reason_name(v.reason),
		      mig_reason_name(t->why));
	if (t->check) {
		ck_assert_msg(fabs(v.predicted_downtime_ms - t->pred_ms) <=
			      1e-9 * (t->pred_ms + 1), "%s: predicted %g ms, "
			      "expected %g", t->name, v.predicted_downtime_ms,
			      t->pred_ms);
		ck_assert_msg(fabs(v.dirty_rate_mibs - t->rate_mibs) <=
			      1e-9 * (t->rate_mibs + 1), "%s: dirty rate %g "
			      "MiB/s, expected %g", t->name, v.dirty_rate_mibs,
			      t->rate_mibs);
	}
}
END_TEST

/* The names are what the table says: every row's name is unique. */
START_TEST(policy_rows_are_named_once)
{
	for (size_t i = 0; i < UT_ARRAY_SIZE(rows); i++) {
		ck_assert_ptr_nonnull(rows[i].name);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(rows[i].name, rows[j].name);
	}
	ck_assert_uint_ge(UT_ARRAY_SIZE(rows), 15);
}
END_TEST

/* The defaults: 300 ms, 30 rounds, 120 s; the caller's values win. */
START_TEST(policy_defaults)
{
	struct mig_source_params p = { .mode = MIG_MODE_HYBRID };
	struct mig_policy pol;

	mig_policy_init(&pol, &p, true);
	ck_assert_int_eq(pol.mode, MIG_MODE_HYBRID);
	ck_assert(pol.can_postcopy);
	ck_assert_uint_eq(pol.downtime_limit_ms, 300);
	ck_assert_uint_eq(pol.max_rounds, 30);
	ck_assert_uint_eq(pol.deadline_ns, 120 * 1000000000ULL);
	p = (struct mig_source_params){ .downtime_limit_ms = 7,
					.max_rounds = 2, .deadline_s = 9 };
	mig_policy_init(&pol, &p, false);
	ck_assert_int_eq(pol.mode, MIG_MODE_AUTO);
	ck_assert(!pol.can_postcopy);
	ck_assert_uint_eq(pol.downtime_limit_ms, 7);
	ck_assert_uint_eq(pol.max_rounds, 2);
	ck_assert_uint_eq(pol.deadline_ns, 9 * 1000000000ULL);
}
END_TEST

/* Pure: the same inputs and state give the same verdict and state, and
 * a switchover or hybrid decision leaves the state alone. */
START_TEST(policy_is_pure)
{
	struct mig_source_params p = { .mode = MIG_MODE_AUTO };
	struct mig_round_input in = { .round = 3, .dirty_bytes = 1e9,
				      .bandwidth_mibs = 100, .duration_s = 1,
				      .elapsed_ns = 4000000000ULL };
	struct mig_policy_state a = { .rounds = 3, .best_ms = 9000 }, b = a;
	struct mig_verdict va, vb;
	struct mig_policy pol;

	mig_policy_init(&pol, &p, true);
	va = mig_policy_next(&pol, &a, &in);
	vb = mig_policy_next(&pol, &b, &in);
	ck_assert(memcmp(&va, &vb, sizeof(va)) == 0);
	ck_assert(memcmp(&a, &b, sizeof(a)) == 0);
	ck_assert_int_eq(va.decision, MIG_DECIDE_POSTCOPY);
	ck_assert_int_eq(va.reason, MIG_WHY_CHEAPER);
	in.dirty_bytes = 1024;
	b = a;
	va = mig_policy_next(&pol, &a, &in);
	ck_assert_int_eq(va.decision, MIG_DECIDE_SWITCHOVER);
	ck_assert(memcmp(&a, &b, sizeof(a)) == 0);
}
END_TEST

/* auto's early look into round 0: postcopy once the guest has written
 * MIG_POLICY_EARLY_RATIO of what was sent, after MIG_POLICY_EARLY_S. */
static const struct early_row {
	const char *name;
	enum mig_mode mode;
	bool can_postcopy;
	double dirty_mib, sent_mib, at_s;
	enum mig_decision want;
} early_rows[] = {
	{ "auto_fast_writer_goes_postcopy", MIG_MODE_AUTO, true,
	  20, 100, 0.3, MIG_DECIDE_POSTCOPY },
	{ "auto_ratio_exactly_met", MIG_MODE_AUTO, true,
	  15, 100, 0.25, MIG_DECIDE_POSTCOPY },
	{ "auto_slow_writer_stays", MIG_MODE_AUTO, true,
	  14.9, 100, 0.3, MIG_DECIDE_ROUND },
	{ "auto_too_soon_to_tell", MIG_MODE_AUTO, true,
	  20, 100, 0.2, MIG_DECIDE_ROUND },
	{ "auto_nothing_sent_says_nothing", MIG_MODE_AUTO, true,
	  20, 0, 1, MIG_DECIDE_ROUND },
	{ "auto_without_postcopy", MIG_MODE_AUTO, false,
	  100, 100, 1, MIG_DECIDE_ROUND },
	{ "precopy_never_looks", MIG_MODE_PRECOPY, true,
	  100, 100, 1, MIG_DECIDE_ROUND },
	{ "hybrid_finishes_round0", MIG_MODE_HYBRID, true,
	  100, 100, 1, MIG_DECIDE_ROUND },
};

START_TEST(policy_early)
{
	const struct early_row *t = &early_rows[_i];
	struct mig_source_params p = { .mode = t->mode };
	struct mig_early_input in = {
		.dirty_bytes = t->dirty_mib * UT_MiB,
		.sent_bytes = t->sent_mib * UT_MiB, .elapsed_s = t->at_s };
	struct mig_round_input rin = { .dirty_bytes = 1024,
				       .bandwidth_mibs = 1000,
				       .duration_s = 1, .cut_early = true };
	struct mig_policy_state ps = { 0 };
	struct mig_policy pol;
	struct mig_verdict v;

	mig_policy_init(&pol, &p, t->can_postcopy);
	v = mig_policy_early(&pol, &in);
	ck_assert_msg(v.decision == t->want, "%s: %s (%s)", t->name,
		      mig_decision_name(v.decision),
		      mig_reason_name(v.reason));
	ck_assert_int_eq(v.reason, t->want == MIG_DECIDE_POSTCOPY ?
			 MIG_WHY_DIRTY : MIG_WHY_CONVERGING);
	ck_assert_msg(fabs(v.dirty_rate_mibs - t->dirty_mib /
			   (t->at_s > 1e-6 ? t->at_s : 1e-6)) < 1e-9,
		      "%s: rate %g", t->name, v.dirty_rate_mibs);
	/* The round that was cut ends in postcopy, whatever it measured,
	 * where postcopy is at hand. */
	v = mig_policy_next(&pol, &ps, &rin);
	if (t->can_postcopy) {
		ck_assert_int_eq(v.decision, MIG_DECIDE_POSTCOPY);
		ck_assert_int_eq(v.reason, MIG_WHY_DIRTY);
	} else {
		ck_assert_int_ne(v.reason, MIG_WHY_DIRTY);
	}
}
END_TEST

START_TEST(policy_names)
{
	ck_assert_str_eq(mig_decision_name(MIG_DECIDE_ROUND), "round");
	ck_assert_str_eq(mig_decision_name(MIG_DECIDE_CANCEL), "cancel");
	ck_assert_str_eq(mig_decision_name((enum mig_decision)99), "?");
	ck_assert_str_eq(mig_reason_name(MIG_WHY_DEADLINE), "deadline");
	ck_assert_str_eq(mig_reason_name(MIG_WHY_CHEAPER), "postcopy cheaper");
	ck_assert_str_eq(mig_reason_name(MIG_WHY_DIRTY), "dirtying fast");
	ck_assert_str_eq(mig_reason_name((enum mig_reason)-1), "?");
}
END_TEST

/* ---- postcopy fault statistics ---- */

START_TEST(faults_request_then_served)
{
	struct mig_faults f = { 0 };
	struct mig_complete c;

	ck_assert_int_eq(mig_faults_init(&f, 64), 0);
	ck_assert(!mig_faults_served(&f, 3, 500)); /* never asked */
	ck_assert(mig_faults_request(&f, 3, 1000));
	ck_assert(!mig_faults_request(&f, 3, 2000)); /* asked already */
	ck_assert_uint_eq(mig_faults_outstanding(&f), 1);
	ck_assert(mig_faults_served(&f, 3, 5000));
	ck_assert(!mig_faults_served(&f, 3, 6000)); /* once */
	ck_assert_uint_eq(mig_faults_outstanding(&f), 0);
	mig_faults_summary(&f, &c);
	ck_assert_uint_eq(c.faults, 1);
	ck_assert_uint_eq(c.max_ns, 4000); /* from the first request */
	ck_assert_uint_eq(c.blocked_ns, 4000);
	ck_assert_uint_eq(c.hist[3], 1); /* 4 us: [4, 8) */
	mig_faults_fini(&f);
	mig_faults_fini(&f); /* twice is fine */
}
END_TEST

/* A placement that beat the request: taken back, no time counted. */
START_TEST(faults_withdraw)
{
	struct mig_faults f = { 0 };
	struct mig_complete c;

	ck_assert_int_eq(mig_faults_init(&f, 8), 0);
	ck_assert(!mig_faults_withdraw(&f, 5));
	ck_assert(mig_faults_request(&f, 5, 1000));
	ck_assert(mig_faults_withdraw(&f, 5));
	ck_assert(!mig_faults_withdraw(&f, 5));
	ck_assert(!mig_faults_served(&f, 5, 2000));
	ck_assert_uint_eq(mig_faults_outstanding(&f), 0);
	mig_faults_summary(&f, &c);
	ck_assert_uint_eq(c.faults, 0);
	ck_assert_uint_eq(c.max_ns, 0);
	mig_faults_fini(&f);
}
END_TEST

/* A bit without a timestamp (what the old ordering let a receiver see)
 * is served but not counted: one "now - 0" sample would be the max. */
START_TEST(faults_zero_timestamp_ignored)
{
	struct mig_faults f = { 0 };
	struct mig_complete c;

	ck_assert_int_eq(mig_faults_init(&f, 8), 0);
	ut_bitmap_set(&f.requested, 2);
	atomic_fetch_add(&f.outstanding, 1);
	ck_assert(mig_faults_served(&f, 2, 123456789));
	ck_assert_uint_eq(mig_faults_outstanding(&f), 0);
	/* ... and so is one from the future. */
	ck_assert(mig_faults_request(&f, 4, 5000));
	ck_assert(mig_faults_served(&f, 4, 4000));
	mig_faults_summary(&f, &c);
	ck_assert_uint_eq(c.faults, 0);
	ck_assert_uint_eq(c.max_ns, 0);
	ck_assert_uint_eq(atomic_load(&f.hist.count), 0);
	mig_faults_fini(&f);
}
END_TEST

START_TEST(faults_summary_percentiles)
{
	struct mig_faults f = { 0 };
	struct mig_complete c;

	ck_assert_int_eq(mig_faults_init(&f, 200), 0);
	/* Served out of order: 100 us down to 1 us. */
	for (uint64_t g = 0; g < 100; g++) {
		ck_assert(mig_faults_request(&f, g, 1000000));
		ck_assert(mig_faults_served(&f, g,
					    1000000 + (100 - g) * 1000));
	}
	mig_faults_summary(&f, &c);
	ck_assert_uint_eq(c.faults, 100);
	ck_assert_uint_eq(c.p50_ns, 51000);
	ck_assert_uint_eq(c.p99_ns, 100000);
	ck_assert_uint_eq(c.max_ns, 100000);
	ck_assert_uint_eq(c.blocked_ns, 5050 * 1000);
	/* A page asked for again after it was dropped counts again. */
	ck_assert(mig_faults_request(&f, 7, 2000000));
	ck_assert(mig_faults_served(&f, 7, 2000500));
	mig_faults_summary(&f, &c);
	ck_assert_uint_eq(c.faults, 101);
	ck_assert_uint_eq(c.hist[0], 1); /* 0.5 us */
	mig_faults_fini(&f);
}
END_TEST

/* More samples than pages (a page asked for, served, dropped, asked for
 * again, ...) keeps to the array: the histogram has them all. */
START_TEST(faults_more_samples_than_pages)
{
	struct mig_faults f = { 0 };
	struct mig_complete c;

	ck_assert_int_eq(mig_faults_init(&f, 4), 0);
	for (int i = 0; i < 50; i++) {
		ck_assert(mig_faults_request(&f, i % 4, 1000));
		ck_assert(mig_faults_served(&f, i % 4, 3000));
	}
	mig_faults_summary(&f, &c);
	ck_assert_uint_eq(c.faults, 4);
	ck_assert_uint_eq(atomic_load(&f.hist.count), 50);
	ck_assert_uint_eq(c.hist[2], 50);
	mig_faults_fini(&f);
}
END_TEST

/*
 * The race itself: a fault thread asks for pages while a receiver places
 * each one just as it is being asked for, the way on_fault() (dest-fault.c)
 * and placed() (dest-receive.c) meet. No sample may exceed the run's length (a "now - 0"
 * sample is the host's uptime), the count may never wrap, and everything
 * asked for ends served or withdrawn.
 */
#define RACE_PAGES 100000

struct race {
	struct mig_faults f;
	struct ut_bitmap received;
	_Atomic uint64_t next;		/* the page being asked for */
	_Atomic bool wrapped;
};

static void *race_placer(void *arg)
{
	struct race *r = arg;

	for (uint64_t g = 0; g < RACE_PAGES; g++) {
		while (atomic_load(&r->next) < g)
			;
		ut_bitmap_set(&r->received, g);
		mig_faults_served(&r->f, g, ut_now_ns());
		if (mig_faults_outstanding(&r->f) > RACE_PAGES)
			atomic_store(&r->wrapped, true);
	}
	return NULL;
}

START_TEST(faults_race_request_and_place)
{
	struct race *r = calloc(1, sizeof(*r));
	uint64_t t0, span;
	struct mig_complete c;
	pthread_t th;

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(mig_faults_init(&r->f, RACE_PAGES), 0);
	ck_assert_int_eq(ut_bitmap_init(&r->received, RACE_PAGES), 0);
	t0 = ut_now_ns();
	ck_assert_int_eq(pthread_create(&th, NULL, race_placer, r), 0);
	for (uint64_t g = 0; g < RACE_PAGES; g++) {
		atomic_store(&r->next, g);
		if (ut_bitmap_test(&r->received, g))
			continue;
		if (!mig_faults_request(&r->f, g, ut_now_ns()))
			continue;
		if (mig_faults_outstanding(&r->f) > RACE_PAGES)
			atomic_store(&r->wrapped, true);
		if (ut_bitmap_test(&r->received, g))
			mig_faults_withdraw(&r->f, g);
	}
	atomic_store(&r->next, RACE_PAGES);
	pthread_join(th, NULL);
	span = ut_now_ns() - t0;
	mig_faults_summary(&r->f, &c);
	ck_assert_msg(c.max_ns <= span, "a service time of %llu ns in a run "
		      "of %llu ns", (unsigned long long)c.max_ns,
		      (unsigned long long)span);
	ck_assert(!atomic_load(&r->wrapped));
	ck_assert_uint_eq(mig_faults_outstanding(&r->f), 0);
	ck_assert_uint_eq(ut_bitmap_find_next(&r->f.requested, 0),
			  RACE_PAGES);
	ut_bitmap_fini(&r->received);
	mig_faults_fini(&r->f);
	free(r);
}
END_TEST

/* ---- monotonic condition variables ---- */

/* A timed wait that nobody signals lasts its time on the monotonic clock
 * (the wall clock cannot be stepped here to show the difference). */
START_TEST(cond_wait_times_out_monotonic)
{
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t c;
	uint64_t t0, dt;
	int ret;

	ck_assert_int_eq(mig_cond_init(&c), 0);
	pthread_mutex_lock(&m);
	t0 = ut_now_ns();
	do
		ret = mig_cond_wait_ms(&c, &m, 60);
	while (ret == 0 && ut_now_ns() - t0 < 60000000);
	dt = ut_now_ns() - t0;
	pthread_mutex_unlock(&m);
	ck_assert_int_eq(ret, -ETIMEDOUT);
	ck_assert_uint_ge(dt, 60000000);
	ck_assert_uint_lt(dt, 10000000000ULL);
	/* Past a second: the seconds carry. */
	pthread_mutex_lock(&m);
	t0 = ut_now_ns();
	ret = mig_cond_wait_ms(&c, &m, 1001);
	dt = ut_now_ns() - t0;
	pthread_mutex_unlock(&m);
	ck_assert_int_eq(ret, -ETIMEDOUT);
	ck_assert_uint_ge(dt, 1001000000);
	pthread_cond_destroy(&c);
}
END_TEST

struct waker {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool flag;
};

static void *wake_soon(void *arg)
{
	struct waker *w = arg;

	usleep(20000);
	pthread_mutex_lock(&w->m);
	w->flag = true;
	pthread_cond_broadcast(&w->c);
	pthread_mutex_unlock(&w->m);
	return NULL;
}

START_TEST(cond_wait_woken)
{
	struct waker w = { .m = PTHREAD_MUTEX_INITIALIZER };
	pthread_t th;
	int ret = 0;

	ck_assert_int_eq(mig_cond_init(&w.c), 0);
	pthread_mutex_lock(&w.m);
	ck_assert_int_eq(pthread_create(&th, NULL, wake_soon, &w), 0);
	while (!w.flag && ret == 0)
		ret = mig_cond_wait_ms(&w.c, &w.m, 20000);
	pthread_mutex_unlock(&w.m);
	pthread_join(th, NULL);
	ck_assert_int_eq(ret, 0);
	ck_assert(w.flag);
	pthread_cond_destroy(&w.c);
}
END_TEST

/* ---- cancellation: a request against the commitment point ---- */

static bool fd_readable(int fd)
{
	struct pollfd pfd = { fd, POLLIN, 0 };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

START_TEST(cancel_before_commit)
{
	struct mig_cancel c;
	char why[32] = "";

	ck_assert_int_eq(mig_cancel_init(&c), 0);
	ck_assert(!mig_cancel_requested(&c, why, sizeof(why)));
	ck_assert(!fd_readable(c.fd));
	ck_assert_int_eq(mig_cancel_request(&c, "SIGINT", NULL), 0);
	ck_assert(fd_readable(c.fd));
	ck_assert(mig_cancel_requested(&c, why, sizeof(why)));
	ck_assert_str_eq(why, "SIGINT");
	/* A second request changes nothing, the first reason stays. */
	ck_assert_int_eq(mig_cancel_request(&c, "SIGTERM", NULL), -EALREADY);
	ck_assert(mig_cancel_requested(&c, why, sizeof(why)));
	ck_assert_str_eq(why, "SIGINT");
	/* The engine may not commit any more. */
	ck_assert_int_eq(mig_cancel_commit(&c, "here"), -ECANCELED);
	ck_assert_int_eq(mig_cancel_commit(&c, "here"), -ECANCELED);
	mig_cancel_fini(&c);
}
END_TEST

START_TEST(cancel_after_commit_refused)
{
	struct mig_cancel c;
	const char *why = NULL;

	ck_assert_int_eq(mig_cancel_init(&c), 0);
	ck_assert_int_eq(mig_cancel_commit(&c, "the guest runs there"), 0);
	ck_assert_int_eq(mig_cancel_request(&c, "SIGINT", &why), -EBUSY);
	ck_assert_str_eq(why, "the guest runs there");
	ck_assert_int_eq(mig_cancel_request(&c, "SIGINT", NULL), -EBUSY);
	ck_assert(!mig_cancel_requested(&c, NULL, 0));
	ck_assert(!fd_readable(c.fd));
	mig_cancel_fini(&c);
}
END_TEST

START_TEST(cancel_null_and_fini_twice)
{
	struct mig_cancel c;

	/* An engine without a cancel never sees one and always commits. */
	ck_assert(!mig_cancel_requested(NULL, NULL, 0));
	ck_assert_int_eq(mig_cancel_commit(NULL, "here"), 0);
	mig_cancel_fini(NULL);
	ck_assert_int_eq(mig_cancel_init(&c), 0);
	mig_cancel_fini(&c);
	mig_cancel_fini(&c);
}
END_TEST

struct cancel_race {
	struct mig_cancel c;
	int req;		/* what the request got */
};

static void *request_now(void *arg)
{
	struct cancel_race *r = arg;

	r->req = mig_cancel_request(&r->c, "SIGTERM", NULL);
	return NULL;
}

/* Request and commitment from two threads: exactly one of them wins. */
START_TEST(cancel_race_with_commit)
{
	for (int i = 0; i < 200; i++) {
		struct cancel_race r;
		pthread_t th;
		int com;

		ck_assert_int_eq(mig_cancel_init(&r.c), 0);
		ck_assert_int_eq(pthread_create(&th, NULL, request_now, &r), 0);
		com = mig_cancel_commit(&r.c, "here");
		pthread_join(th, NULL);
		if (com == 0)
			ck_assert_int_eq(r.req, -EBUSY);
		else
			ck_assert(com == -ECANCELED && r.req == 0);
		mig_cancel_fini(&r.c);
	}
}
END_TEST

/* ---- the placement plan ---- */

#define MiB (1ULL << 20)

/* The nested host's shape: node 0 with the CPUs (tier 4), node 1
 * memory-only and slower (tier 54); 2 MiB pools of 4 and 8 pages. */
static void two_nodes(struct gm_topo *t, uint64_t free0, uint64_t free1)
{
	memset(t, 0, sizeof(*t));
	t->nr_nodes = 2;
	t->nr_hpsizes = 1;
	t->hpsize[0] = 2 * MiB;
	t->node[0] = (struct gm_numa_node){ .id = 0, .tier = 4, .ncpus = 2,
		.cpulist = "0-1", .mem_total = 2048 * MiB,
		.mem_free = free0, .hp_total = { 4 }, .hp_free = { 4 },
		.distance = { 10, 20 } };
	t->node[1] = (struct gm_numa_node){ .id = 1, .tier = 54, .ncpus = 0,
		.mem_total = 1024 * MiB, .mem_free = free1,
		.hp_total = { 8 }, .hp_free = { 8 }, .distance = { 20, 10 } };
}

#define MAX_CHECKED 4
struct place_row {
	const char *name;
	const char *policy;
	uint32_t fast_share;
	uint64_t size[2];	/* MiB of region 0 and 1 (0: no region 1) */
	uint32_t page_size;	/* of every region */
	int hot_first, hot_n;	/* region 0's chunks [first, first+n) hot */
	int want;		/* 0, -ENOSPC, -EINVAL */
	uint64_t planned[2];	/* MiB on node 0 and 1 */
	/* chunk -> node checks in region 0 (chunk index, node), -1 ends */
	int chunk[MAX_CHECKED][2];
	const char *err_has;	/* in the refusal line */
};

static const struct place_row place_rows[] = {
	{ "local: all on the VMM's node", "local", 0, { 256, 0 }, 4096,
	  0, 0, 0, { 256, 0 }, { { 0, 0 }, { 127, 0 }, { -1 } }, NULL },
	{ "bind:0", "bind:0", 0, { 256, 0 }, 4096, 0, 0, 0, { 256, 0 },
	  { { 0, 0 }, { -1 } }, NULL },
	{ "bind:1: the memory-only node", "bind:1", 0, { 256, 0 }, 4096,
	  0, 0, 0, { 0, 256 }, { { 0, 1 }, { 127, 1 }, { -1 } }, NULL },
	{ "bind:1 beyond its free memory is refused", "bind:1", 0,
	  { 1024, 0 }, 4096, 0, 0, -ENOSPC, { 0, 0 }, { { -1 } },
	  "placement bind:1 cannot fit: the guest's 1024 MiB of 4 KiB pages "
	  "need room on node 1, which has 448 MiB free" },
	{ "bind:0-1 fills node 0, then node 1", "bind:0-1", 0, { 1200, 0 },
	  4096, 0, 0, 0, { 960, 240 }, { { 0, 0 }, { 479, 0 }, { 480, 1 },
	  { -1 } }, NULL },
	{ "interleave:0-1 alternates chunks", "interleave:0-1", 0,
	  { 256, 0 }, 4096, 0, 0, 0, { 128, 128 },
	  { { 0, 0 }, { 1, 1 }, { 2, 0 }, { 127, 1 } }, NULL },
	{ "interleave: a short last chunk", "interleave:0-1", 0, { 5, 0 },
	  4096, 0, 0, 0, { 3, 2 }, { { 0, 0 }, { 1, 1 }, { 2, 0 }, { -1 } },
	  NULL },
	{ "tiered without a share: all fits on top", "tiered", 0,
	  { 256, 0 }, 4096, 0, 0, 0, { 256, 0 }, { { 0, 0 }, { -1 } }, NULL },
	{ "tiered 10%: the hot chunks on node 0", "tiered", 10, { 200, 0 },
	  4096, 50, 10, 0, { 20, 180 },
	  { { 49, 1 }, { 50, 0 }, { 59, 0 }, { 60, 1 } }, NULL },
	{ "tiered: a full top tier spills below", "tiered", 0, { 1200, 0 },
	  4096, 0, 0, 0, { 960, 240 }, { { 0, 0 }, { 599, 1 }, { -1 } },
	  NULL },
	{ "cells:1,0 maps guest cells to nodes", "cells:1,0", 0, { 128, 64 },
	  4096, 0, 0, 0, { 64, 128 }, { { 0, 1 }, { 63, 1 }, { -1 } }, NULL },
	{ "cells: one node per region", "cells:0", 0, { 128, 64 }, 4096,
	  0, 0, -EINVAL, { 0, 0 }, { { -1 } }, "names 1 nodes, the guest "
	  "has 2 RAM regions" },
	{ "bind to a node the host lacks", "bind:3", 0, { 64, 0 }, 4096,
	  0, 0, -EINVAL, { 0, 0 }, { { -1 } }, "this host has no node 3" },
	{ "huge pages from the chosen node's pool", "bind:1", 0, { 16, 0 },
	  2 << 20, 0, 0, 0, { 0, 16 }, { { 0, 1 }, { 7, 1 }, { -1 } }, NULL },
	{ "a pool too small is refused", "bind:0", 0, { 32, 0 }, 2 << 20,
	  0, 0, -ENOSPC, { 0, 0 }, { { -1 } }, "needs 16 2 MiB huge pages on "
	  "node 0, whose pools have 4 free: reserve them with `echo 16 > "
	  "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/"
	  "nr_hugepages`" },
	{ "interleave short on both nodes: each node's share", "interleave:0-1",
	  0, { 48, 0 }, 2 << 20, 0, 0, -ENOSPC, { 0, 0 }, { { -1 } },
	  "reserve them with `for n in 0:12 1:12;do echo ${n#*:}>/sys/devices/"
	  "system/node/node${n%:*}/hugepages/hugepages-2048kB/nr_hugepages;"
	  "done`" },
	{ "1 GiB pages with no pool", "local", 0, { 1024, 0 }, 1 << 30,
	  0, 0, -ENOSPC, { 0, 0 }, { { -1 } }, "no pool of 1 GiB huge pages" },
};

START_TEST(placement_table)
{
	const struct place_row *w = &place_rows[_i];
	struct mig_layout l = { 0 };
	struct mig_place_policy pol;
	struct mig_plan pl;
	struct gm_topo t;
	struct ut_err err = { "" };
	uint8_t heat0[2048] = { 0 };
	const uint8_t *heat[2] = { heat0, NULL };
	struct mig_plan_input in = { .topo = &t, .layout = &l,
		.local_nodes = 1, .reserve = 64 * MiB, .heat = heat };
	int ret;

	two_nodes(&t, 1024 * MiB, 512 * MiB);
	for (int i = 0; i < 2 && w->size[i]; i++) {
		l.r[i] = (struct mig_region){ .gpa = i * (4ULL << 30),
			.size = w->size[i] * MiB, .page_size = w->page_size };
		l.nr++;
	}
	for (int i = w->hot_first; i < w->hot_first + w->hot_n; i++)
		heat0[i] = 5;
	ck_assert_int_eq(mig_place_parse(w->policy, &pol, &err), 0);
	pol.fast_share = w->fast_share;
	ret = mig_plan_make(&pl, &in, &pol, &err);
	ck_assert_msg(ret == w->want, "%s: got %d (%s), want %d", w->name, ret,
		      err.msg, w->want);
	if (w->err_has)
		ck_assert_msg(strstr(err.msg, w->err_has), "%s: '%s' lacks '%s'",
			      w->name, err.msg, w->err_has);
	if (ret)
		return;
	for (int n = 0; n < 2; n++)
		ck_assert_msg(pl.planned[n] == w->planned[n] * MiB,
			      "%s: node %d planned %llu MiB, want %llu",
			      w->name, n,
			      (unsigned long long)(pl.planned[n] / MiB),
			      (unsigned long long)w->planned[n]);
	for (int k = 0; k < MAX_CHECKED && w->chunk[k][0] >= 0; k++)
		ck_assert_msg(pl.r[0].node[w->chunk[k][0]] == w->chunk[k][1],
			      "%s: chunk %d on node %u, want %d", w->name,
			      w->chunk[k][0], pl.r[0].node[w->chunk[k][0]],
			      w->chunk[k][1]);
	mig_plan_fini(&pl);
}
END_TEST

/* The same inputs make the same plan, and the inputs are left alone. */
START_TEST(placement_is_pure)
{
	struct mig_layout l = { .nr = 1, .r = { { 0, 300 * MiB, 4096, 0 } } };
	struct mig_place_policy pol;
	struct mig_plan a, b;
	struct gm_topo t, t2;
	struct ut_err err = { "" };
	struct mig_plan_input in = { .topo = &t, .layout = &l,
				     .local_nodes = 1, .reserve = 0 };

	two_nodes(&t, 1024 * MiB, 512 * MiB);
	t2 = t;
	ck_assert_int_eq(mig_place_parse("interleave:0-1", &pol, &err), 0);
	ck_assert_int_eq(mig_plan_make(&a, &in, &pol, &err), 0);
	ck_assert_int_eq(mig_plan_make(&b, &in, &pol, &err), 0);
	ck_assert_int_eq(a.r[0].nchunks, 150);
	ck_assert(!memcmp(a.r[0].node, b.r[0].node, a.r[0].nchunks));
	ck_assert(!memcmp(a.planned, b.planned, sizeof(a.planned)));
	ck_assert(!memcmp(&t, &t2, sizeof(t)));
	mig_plan_fini(&a);
	mig_plan_fini(&b);
	mig_plan_fini(&b); /* twice: a no-op */
}
END_TEST

/* Plan revisions (tiered, 10% of 200 MiB fast: 10 chunks on node 0):
 * a first plan from one hot set, then a revision from another, with the
 * chunks already allocated pinned where the first plan put them. */
struct revise_row {
	const char *name;
	int hot0[2];		/* the first plan's hot chunks [first, +n) */
	int hot1[2];		/* the revision's */
	int pin[2];		/* allocated: kept [first, +n) */
	uint32_t moved;		/* chunks whose node changed */
	uint64_t planned0;	/* MiB on node 0 after it */
	int chunk[MAX_CHECKED][2]; /* chunk -> node after it, -1 ends */
};

static const struct revise_row revise_rows[] = {
	{ "nothing allocated: the new hot set takes the top tier",
	  { 50, 10 }, { 0, 10 }, { 0, 0 }, 20, 20,
	  { { 0, 0 }, { 9, 0 }, { 50, 1 }, { 59, 1 } } },
	{ "the old hot set allocated keeps the top tier's share",
	  { 50, 10 }, { 0, 10 }, { 50, 10 }, 0, 20,
	  { { 0, 1 }, { 9, 1 }, { 50, 0 }, { 59, 0 } } },
	{ "half of it allocated: the other half of the share moves",
	  { 50, 10 }, { 0, 10 }, { 50, 5 }, 10, 20,
	  { { 4, 0 }, { 5, 1 }, { 54, 0 }, { 55, 1 } } },
	{ "allocated below stays below, the share goes to the next hottest",
	  { 50, 10 }, { 0, 10 }, { 0, 10 }, 20, 20,
	  { { 0, 1 }, { 10, 0 }, { 19, 0 }, { 50, 1 } } },
	{ "the same heat: the same plan", { 50, 10 }, { 50, 10 }, { 0, 0 },
	  0, 20, { { 50, 0 }, { 60, 1 }, { -1 } } },
};

START_TEST(placement_revise_table)
{
	const struct revise_row *w = &revise_rows[_i];
	struct mig_layout l = { .nr = 1, .r = { { 0, 200 * MiB, 4096, 0 } } };
	uint8_t h0[100] = { 0 }, h1[100] = { 0 }, pin[100] = { 0 };
	const uint8_t *heat0[1] = { h0 }, *heat1[1] = { h1 };
	const uint8_t *pinned[1] = { pin };
	struct mig_plan_input in = { .topo = NULL, .layout = &l,
		.local_nodes = 1, .reserve = 64 * MiB, .heat = heat0 };
	struct mig_place_policy pol;
	struct mig_plan first, next;
	struct mig_plan_delta dl;
	struct ut_err err = { "" };
	struct gm_topo t;

	two_nodes(&t, 1024 * MiB, 512 * MiB);
	in.topo = &t;
	for (int i = 0; i < w->hot0[1]; i++)
		h0[w->hot0[0] + i] = 5;
	for (int i = 0; i < w->hot1[1]; i++)
		h1[w->hot1[0] + i] = 5;
	for (int i = 0; i < w->pin[1]; i++)
		pin[w->pin[0] + i] = 1;
	ck_assert_int_eq(mig_place_parse("tiered", &pol, &err), 0);
	pol.fast_share = 10;
	ck_assert_int_eq(mig_plan_make(&first, &in, &pol, &err), 0);
	in.heat = heat1;
	in.pinned = pinned;
	in.prev = &first;
	ck_assert_msg(mig_plan_make(&next, &in, &pol, &err) == 0, "%s: %s",
		      w->name, err.msg);
	mig_plan_diff(&first, &next, &l, &dl);
	ck_assert_msg(dl.chunks == w->moved && dl.bytes == w->moved * 2 * MiB,
		      "%s: %u chunks (%llu bytes) moved, want %u", w->name,
		      dl.chunks, (unsigned long long)dl.bytes, w->moved);
	ck_assert_msg(next.planned[0] == w->planned0 * MiB &&
		      next.planned[1] == (200 - w->planned0) * MiB,
		      "%s: %llu MiB on node 0, want %llu", w->name,
		      (unsigned long long)(next.planned[0] / MiB),
		      (unsigned long long)w->planned0);
	for (int i = 0; i < 100; i++)	/* allocated chunks never move */
		ck_assert(!pin[i] || next.r[0].node[i] == first.r[0].node[i]);
	for (int k = 0; k < MAX_CHECKED && w->chunk[k][0] >= 0; k++)
		ck_assert_msg(next.r[0].node[w->chunk[k][0]] == w->chunk[k][1],
			      "%s: chunk %d on node %u, want %d", w->name,
			      w->chunk[k][0], next.r[0].node[w->chunk[k][0]],
			      w->chunk[k][1]);
	mig_plan_fini(&first);
	mig_plan_fini(&next);
}
END_TEST

/* A revision needs the plan it revises, of the same layout. */
START_TEST(placement_revise_refused)
{
	struct mig_layout l = { .nr = 1, .r = { { 0, 64 * MiB, 4096, 0 } } };
	struct mig_layout l2 = { .nr = 1, .r = { { 0, 32 * MiB, 4096, 0 } } };
	uint8_t pin[32] = { 1 };
	const uint8_t *pinned[1] = { pin };
	struct mig_plan_input in = { .layout = &l, .local_nodes = 1,
				     .pinned = pinned };
	struct mig_place_policy pol;
	struct ut_err err = { "" };
	struct mig_plan first, next;
	struct gm_topo t;

	two_nodes(&t, 1024 * MiB, 512 * MiB);
	in.topo = &t;
	ck_assert_int_eq(mig_place_parse("tiered", &pol, &err), 0);
	ck_assert_int_eq(mig_plan_make(&next, &in, &pol, &err), -EINVAL);
	in.pinned = NULL;
	in.layout = &l2;
	ck_assert_int_eq(mig_plan_make(&first, &in, &pol, &err), 0);
	in.layout = &l;
	in.pinned = pinned;
	in.prev = &first;
	ut_err_clear(&err);
	ck_assert_int_eq(mig_plan_make(&next, &in, &pol, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "another layout"), "%s", err.msg);
	mig_plan_fini(&first);
}
END_TEST

/* A round folded into the heat map: the old fades by a quarter (rounded
 * up), the round counts 4; always written stays at heat = samples, never
 * written cools to 0, and heat never exceeds samples. */
START_TEST(heat_fold_table)
{
	static const struct {
		const char *name;
		uint8_t heat;
		uint32_t samples;
		bool written;
		uint8_t want;
		uint32_t want_samples;
	} fold_rows[] = {
		{ "hot in the samples, written", 5, 5, true, 7, 7 },
		{ "hot in the samples, not written", 5, 5, false, 3, 7 },
		{ "cold, written", 0, 5, true, 4, 7 },
		{ "cold, not written", 0, 5, false, 0, 7 },
		{ "settled and written", 13, 13, true, 13, 13 },
		{ "one left fades out", 1, 13, false, 0, 13 },
	};
	uint8_t on = 1, off = 0, hot, cold;
	uint32_t s;

	for (size_t i = 0; i < UT_ARRAY_SIZE(fold_rows); i++) {
		uint8_t h = fold_rows[i].heat;

		s = fold_rows[i].samples;
		mig_heat_fold(&h, fold_rows[i].written ? &on : &off, 1, &s);
		ck_assert_msg(h == fold_rows[i].want && s == fold_rows[i].want_samples,
			      "%s: heat %u of %u, want %u of %u", fold_rows[i].name,
			      h, s, fold_rows[i].want, fold_rows[i].want_samples);
	}
	hot = 5, cold = 5, s = 5;
	for (int r = 0; r < 40; r++) {
		uint8_t pair[2] = { hot, cold }, w[2] = { 1, 0 };

		mig_heat_fold(pair, w, 2, &s);
		hot = pair[0], cold = pair[1];
		ck_assert(hot == s && cold <= s && s <= 255);
	}
	ck_assert_uint_eq(s, 13);
	ck_assert_uint_eq(cold, 0);
}
END_TEST

/* When the source re-sends its heat map: a quarter of write frequency on
 * at least 1% of the chunks (and one). */
START_TEST(heat_material_table)
{
	static const struct {
		const char *name;
		uint8_t a[4], b[4];
		uint32_t sa, sb, n;
		bool want;
	} mat_rows[] = {
		{ "the same map", { 5, 0, 3, 1 }, { 5, 0, 3, 1 }, 5, 5, 4, false },
		{ "the same frequencies, more samples", { 5, 0, 4, 1 },
		  { 10, 0, 8, 2 }, 5, 10, 4, false },
		{ "one chunk half as hot again", { 5, 0, 0, 0 },
		  { 5, 5, 0, 0 }, 5, 10, 4, true },
		{ "a fifth is not a quarter", { 2, 0, 0, 0 }, { 3, 0, 0, 0 },
		  5, 5, 4, false },
		{ "a quarter exactly", { 0, 0, 0, 0 }, { 1, 0, 0, 0 }, 4, 4, 4,
		  true },
		{ "samples where there were none", { 0 }, { 0 }, 0, 5, 4, true },
		{ "none either side", { 0 }, { 0 }, 0, 0, 4, false },
	};
	static uint8_t a[200], b[200];

	for (size_t i = 0; i < UT_ARRAY_SIZE(mat_rows); i++)
		ck_assert_msg(mig_heat_material(mat_rows[i].a, mat_rows[i].sa, mat_rows[i].b,
						mat_rows[i].sb, mat_rows[i].n) ==
			      mat_rows[i].want, "%s", mat_rows[i].name);
	/* One chunk in 200 is less than 1%: two are needed. */
	b[7] = 5;
	ck_assert(!mig_heat_material(a, 5, b, 5, 200));
	b[9] = 5;
	ck_assert(mig_heat_material(a, 5, b, 5, 200));
}
END_TEST

/* After WELCOME an engine counts the wire's units: a 2 MiB region fed
 * 4 KiB units has 512 of them per page, and the regions after it start
 * further on. */
START_TEST(vm_units)
{
	static struct mig_vm vm;
	struct mig_layout wire;

	memset(&vm, 0, sizeof(vm));
	vm.nr = 2;
	vm.map[0].page_size = 2 << 20;
	vm.map[1].page_size = 4096;
	vm.layout = (struct mig_layout){ .nr = 2, .r = {
		{ .gpa = 0, .size = 8 << 20, .page_size = 2 << 20 },
		{ .gpa = 1ULL << 32, .size = 1 << 20, .page_size = 4096 },
	} };
	vm.first[1] = 4;
	vm.total_pages = 4 + 256;
	wire = vm.layout;
	mig_vm_use_units(&vm, &wire);
	ck_assert(!vm.units);
	ck_assert_uint_eq(vm.total_pages, 260);
	ck_assert_uint_eq(mig_vm_per_page(&vm, 0), 1);
	wire.r[0].page_size = 4096;
	mig_vm_use_units(&vm, &wire);
	ck_assert(vm.units);
	ck_assert_uint_eq(mig_vm_per_page(&vm, 0), 512);
	ck_assert_uint_eq(mig_vm_per_page(&vm, 1), 1);
	ck_assert_uint_eq(vm.first[1], 2048);
	ck_assert_uint_eq(vm.total_pages, 2048 + 256);
}
END_TEST

START_TEST(placement_policy_text)
{
	static const struct { const char *in, *out; int ret; } texts[] = {
		{ "local", "local", 0 },
		{ "bind:0", "bind:0", 0 },
		{ "bind:0,1,2", "bind:0-2", 0 },
		{ "interleave:1,3-4", "interleave:1,3-4", 0 },
		{ "tiered", "tiered", 0 },
		{ "cells:1,0", "cells:1,0", 0 },
		{ "none", "none", 0 },
		{ "bind:", NULL, -EINVAL },
		{ "bind:64", NULL, -EINVAL },
		{ "bind:1-", NULL, -EINVAL },
		{ "interleave:x", NULL, -EINVAL },
		{ "cells:", NULL, -EINVAL },
		{ "cells:0,,1", NULL, -EINVAL },
		{ "nearest", NULL, -EINVAL },
	};
	struct mig_place_policy p;
	struct ut_err err;
	char buf[64];

	for (size_t i = 0; i < UT_ARRAY_SIZE(texts); i++) {
		ut_err_clear(&err);
		ck_assert_msg(mig_place_parse(texts[i].in, &p, &err) == texts[i].ret,
			      "'%s'", texts[i].in);
		if (texts[i].ret) {
			ck_assert_msg(strstr(err.msg, "--placement"), "'%s': %s",
				      texts[i].in, err.msg);
			continue;
		}
		mig_place_format(&p, buf, sizeof(buf));
		ck_assert_str_eq(buf, texts[i].out);
	}
}
END_TEST

/* An operator's postcopy request wins over every other outcome, in any
 * mode, but only where the destination offered postcopy. */
START_TEST(policy_postcopy_requested)
{
	static const enum mig_mode modes[] = { MIG_MODE_AUTO, MIG_MODE_PRECOPY,
					       MIG_MODE_HYBRID };
	struct mig_round_input in = { .round = 1, .dirty_bytes = 1,
				      .bandwidth_mibs = 1000, .duration_s = 1,
				      .postcopy_requested = true };

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(modes); i++) {
		struct mig_source_params p = { .mode = modes[i] };
		struct mig_policy_state ps = { 0 };
		struct mig_policy pol;
		struct mig_verdict v;

		mig_policy_init(&pol, &p, true);
		v = mig_policy_next(&pol, &ps, &in);
		ck_assert_int_eq(v.decision, MIG_DECIDE_POSTCOPY);
		ck_assert_int_eq(v.reason, MIG_WHY_REQUESTED);
		ck_assert_str_eq(mig_reason_name(v.reason), "requested");
		mig_policy_init(&pol, &p, false);
		v = mig_policy_next(&pol, &ps, &in);
		ck_assert_int_ne(v.reason, MIG_WHY_REQUESTED);
	}
}
END_TEST

START_TEST(tune_limits_and_refusals)
{
	struct mig_tune t;
	struct mig_tune_now now;
	const char *why = NULL;

	ck_assert_int_eq(mig_tune_init(&t, 300, 0), 0);
	mig_tune_read(&t, &now);
	ck_assert_uint_eq(now.downtime_limit_ms, 300);
	ck_assert_uint_eq(now.bandwidth_limit, 0);
	ck_assert(!now.postcopy);
	ck_assert_int_eq(mig_tune_set_downtime(&t, 0, &why), -EINVAL);
	ck_assert_int_eq(mig_tune_set_downtime(&t, 600001, &why), -EINVAL);
	ck_assert_int_eq(mig_tune_set_downtime(&t, 5000, &why), 0);
	ck_assert_int_eq(mig_tune_set_bandwidth(&t, 1000, &why), -EINVAL);
	ck_assert_int_eq(mig_tune_set_bandwidth(&t, 64 << 20, &why), 0);
	mig_tune_read(&t, &now);
	ck_assert_uint_eq(now.downtime_limit_ms, 5000);
	ck_assert_uint_eq(now.bandwidth_limit, 64 << 20);
	/* Before the engine says postcopy can start: refused, saying why. */
	ck_assert_int_eq(mig_tune_postcopy(&t, &why), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(why, "not negotiated"));
	mig_tune_engine(&t, true, NULL, false);
	ck_assert_int_eq(mig_tune_postcopy(&t, &why), 0);
	ck_assert_int_eq(mig_tune_postcopy(&t, &why), -EALREADY);
	mig_tune_read(&t, &now);
	ck_assert(now.postcopy);
	/* Past the switchover the downtime limit no longer applies. */
	mig_tune_engine(&t, false, "the destination runs the guest", true);
	ck_assert_int_eq(mig_tune_set_downtime(&t, 100, &why), -EBUSY);
	ck_assert_ptr_nonnull(strstr(why, "switchover"));
	mig_tune_fini(&t);
}
END_TEST

/* Events from several threads: every line one object, seq in file
 * order, none lost; a full device is an error, said and kept. */
struct ev_writer {
	struct mig_events *ev;
	int id;
};

static void *write_events(void *arg)
{
	struct ev_writer *w = arg;

	for (int i = 0; i < 200; i++) {
		struct mig_event e;

		mig_event_begin(&e, w->ev, "round_end");
		ut_json_u64(&e.j, "writer", w->id);
		ut_json_str(&e.j, "text", "a \"quoted\" line\n");
		mig_event_end(&e);
	}
	return NULL;
}

START_TEST(events_lines_in_order)
{
	char path[] = "/tmp/check-migrate-events.XXXXXX";
	struct ut_err err;
	char line[2048];
	struct ev_writer w[3];
	pthread_t th[3];
	struct mig_events *ev;
	uint64_t written = 0, n = 0;
	FILE *f;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(mig_events_open(&ev, path, "source", &err), 0);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct ev_writer){ ev, i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, write_events,
						&w[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(mig_events_close(ev, &written), 0);
	ck_assert_uint_eq(written, 600);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		struct ut_json_member m[8];
		int k = ut_json_parse(line, strlen(line), m, 8);

		ck_assert_int_eq(k, 6);
		ck_assert_str_eq(ut_json_get(m, k, "event")->str, "round_end");
		ck_assert_str_eq(ut_json_get(m, k, "role")->str, "source");
		ck_assert_double_eq(ut_json_get(m, k, "seq")->num, n);
		ck_assert_str_eq(ut_json_get(m, k, "text")->str,
				 "a \"quoted\" line\n");
		n++;
	}
	fclose(f);
	unlink(path);
	ck_assert_uint_eq(n, 600);
	/* A sink of NULL takes events and writes nothing. */
	write_events(&(struct ev_writer){ NULL, 9 });
	ck_assert_int_eq(mig_events_close(NULL, NULL), 0);
}
END_TEST

START_TEST(events_full_device)
{
	struct mig_events *ev;
	struct ut_err err;
	uint64_t written = 1;

	if (access("/dev/full", W_OK))
		return; /* nothing to fill here */
	ck_assert_int_eq(mig_events_open(&ev, "/dev/full", "dest", &err), 0);
	write_events(&(struct ev_writer){ ev, 0 });
	ck_assert_int_eq(mig_events_close(ev, &written), -ENOSPC);
	ck_assert_uint_eq(written, 0);
	ck_assert_int_eq(mig_events_open(&ev, "/nonexistent/dir/ev", "dest",
					 &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/dir/ev"));
}
END_TEST

/* ---- the phases ---- */

/* Every path an engine walks, start to outcome (SETUP first). */
static const enum mig_phase walks[][8] = {
#define W(...) { MIG_PHASE_SETUP, __VA_ARGS__, MIG_PHASE_COUNT }
	W(MIG_PHASE_PRECOPY, MIG_PHASE_SWITCHOVER, MIG_PHASE_COMPLETE),
	W(MIG_PHASE_PRECOPY, MIG_PHASE_SWITCHOVER, MIG_PHASE_POSTCOPY,
	  MIG_PHASE_RECOVERING, MIG_PHASE_POSTCOPY, MIG_PHASE_COMPLETE),
	W(MIG_PHASE_PRECOPY, MIG_PHASE_SWITCHOVER, MIG_PHASE_POSTCOPY,
	  MIG_PHASE_RECOVERING, MIG_PHASE_INTERRUPTED),
	W(MIG_PHASE_PRECOPY, MIG_PHASE_CANCELLED),
	W(MIG_PHASE_PRECOPY, MIG_PHASE_SWITCHOVER, MIG_PHASE_CANCELLED),
	W(MIG_PHASE_PRECOPY, MIG_PHASE_SWITCHOVER, MIG_PHASE_POSTCOPY,
	  MIG_PHASE_CANCELLED),
	W(MIG_PHASE_POSTCOPY, MIG_PHASE_COMPLETE),	/* --recover */
	W(MIG_PHASE_FAILED),
#undef W
};

START_TEST(phase_walks)
{
	const enum mig_phase *w = walks[_i];
	enum mig_phase cur = w[0];

	for (unsigned int k = 1; w[k] != MIG_PHASE_COUNT; k++) {
		ck_assert_msg(mig_phase_enter(&cur, w[k]) == 0,
			      "walk %d: %s -> %s refused", _i,
			      mig_phase_name(w[k - 1]), mig_phase_name(w[k]));
		ck_assert_int_eq(cur, w[k]);
	}
	ck_assert(mig_phase_terminal(cur));
}
END_TEST

/* Hand-offs no engine may make: the phase stays where it was. */
START_TEST(phase_refused)
{
	static const enum mig_phase bad[][2] = {
		{ MIG_PHASE_SETUP, MIG_PHASE_SWITCHOVER },
		{ MIG_PHASE_SETUP, MIG_PHASE_COMPLETE },
		{ MIG_PHASE_PRECOPY, MIG_PHASE_POSTCOPY },
		{ MIG_PHASE_PRECOPY, MIG_PHASE_INTERRUPTED },
		{ MIG_PHASE_SWITCHOVER, MIG_PHASE_PRECOPY },
		{ MIG_PHASE_SWITCHOVER, MIG_PHASE_INTERRUPTED },
		{ MIG_PHASE_RECOVERING, MIG_PHASE_COMPLETE },
		{ MIG_PHASE_COMPLETE, MIG_PHASE_FAILED },
		{ MIG_PHASE_CANCELLED, MIG_PHASE_PRECOPY },
		{ MIG_PHASE_INTERRUPTED, MIG_PHASE_POSTCOPY },
		{ MIG_PHASE_FAILED, MIG_PHASE_COUNT },
	};

	for (size_t i = 0; i < UT_ARRAY_SIZE(bad); i++) {
		enum mig_phase cur = bad[i][0];

		ck_assert_int_eq(mig_phase_enter(&cur, bad[i][1]), -EINVAL);
		ck_assert_int_eq(cur, bad[i][0]);
	}
	for (int p = MIG_PHASE_COMPLETE; p < MIG_PHASE_COUNT; p++)
		for (int q = 0; q < MIG_PHASE_COUNT; q++)
			ck_assert(!mig_phase_can(p, q));
	ck_assert_str_eq(mig_phase_name(MIG_PHASE_COMPLETE), "completed");
	ck_assert_str_eq(mig_phase_name(MIG_PHASE_INTERRUPTED), "interrupted");
	ck_assert_str_eq(mig_phase_name(MIG_PHASE_COUNT), "?");
}
END_TEST

/* ---- the worker shape ---- */

/* Sleeps in poll on its stop eventfd, as the urgent and fault threads. */
static void *poller(void *arg)
{
	struct mig_worker *w = arg;
	struct pollfd pfd = { w->stop_fd, POLLIN, 0 };

	while (poll(&pfd, 1, 10000) == 0)
		;
	return (void *)(uintptr_t)(pfd.revents & POLLIN);
}

struct waiter {
	struct mig_worker wk;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool saw_stop;
};

/* Sleeps on a condition variable, as a sender between rounds. */
static void *cond_waiter(void *arg)
{
	struct waiter *x = arg;

	pthread_mutex_lock(&x->lock);
	while (!mig_worker_stopping(&x->wk))
		pthread_cond_wait(&x->cond, &x->lock);
	x->saw_stop = true;
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

START_TEST(worker_stop_by_eventfd)
{
	struct mig_worker w;
	void *res = NULL;

	mig_worker_init(&w);
	mig_worker_join(&w);	/* never started: a no-op */
	ck_assert_int_eq(w.stop_fd, -1);
	ck_assert_int_eq(mig_worker_start(&w, poller, &w), 0);
	ck_assert_int_eq(mig_worker_start(&w, poller, &w), -EBUSY);
	ck_assert(!mig_worker_stopping(&w));
	mig_worker_kick(&w);
	mig_worker_kick(&w);	/* twice is once */
	ck_assert(mig_worker_stopping(&w));
	ck_assert_int_eq(pthread_join(w.thread, &res), 0);
	w.started = false;	/* joined by hand to see the result */
	ck_assert_ptr_eq(res, (void *)(uintptr_t)POLLIN);
	mig_worker_join(&w);
	ck_assert_int_eq(w.stop_fd, -1);
	/* Started again after a join, stopped in one call. */
	ck_assert_int_eq(mig_worker_start(&w, poller, &w), 0);
	mig_worker_stop(&w);
	ck_assert(!w.started);
}
END_TEST

START_TEST(worker_stop_on_condvar)
{
	struct waiter x = { .saw_stop = false };

	mig_worker_init(&x.wk);
	pthread_mutex_init(&x.lock, NULL);
	ck_assert_int_eq(mig_cond_init(&x.cond), 0);
	ck_assert_int_eq(mig_worker_start(&x.wk, cond_waiter, &x), 0);
	pthread_mutex_lock(&x.lock);
	mig_worker_kick(&x.wk);
	pthread_cond_broadcast(&x.cond);
	pthread_mutex_unlock(&x.lock);
	mig_worker_join(&x.wk);
	ck_assert(x.saw_stop);
	pthread_cond_destroy(&x.cond);
	pthread_mutex_destroy(&x.lock);
}
END_TEST

int main(void)
{
	const struct ft_case cases[] = {
		{ "policy_table", policy_table, UT_ARRAY_SIZE(rows), 0 },
		{ "policy_rows_are_named_once", policy_rows_are_named_once,
		  0, 0 },
		{ "policy_defaults", policy_defaults, 0, 0 },
		{ "policy_is_pure", policy_is_pure, 0, 0 },
		{ "policy_names", policy_names, 0, 0 },
		{ "policy_early", policy_early, UT_ARRAY_SIZE(early_rows), 0 },
		{ "faults_request_then_served", faults_request_then_served,
		  0, 0 },
		{ "faults_withdraw", faults_withdraw, 0, 0 },
		{ "faults_zero_timestamp_ignored",
		  faults_zero_timestamp_ignored, 0, 0 },
		{ "faults_summary_percentiles", faults_summary_percentiles,
		  0, 0 },
		{ "faults_more_samples_than_pages",
		  faults_more_samples_than_pages, 0, 0 },
		{ "faults_race_request_and_place",
		  faults_race_request_and_place, 20, 0 },
		{ "cond_wait_times_out_monotonic",
		  cond_wait_times_out_monotonic, 0, 0 },
		{ "cond_wait_woken", cond_wait_woken, 0, 0 },
		{ "cancel_before_commit", cancel_before_commit, 0, 0 },
		{ "cancel_after_commit_refused", cancel_after_commit_refused,
		  0, 0 },
		{ "cancel_null_and_fini_twice", cancel_null_and_fini_twice,
		  0, 0 },
		{ "cancel_race_with_commit", cancel_race_with_commit, 0, 0 },
		{ "policy_postcopy_requested", policy_postcopy_requested,
		  0, 0 },
		{ "tune_limits_and_refusals", tune_limits_and_refusals, 0, 0 },
		{ "events_lines_in_order", events_lines_in_order, 0, 0 },
		{ "events_full_device", events_full_device, 0, 0 },
		{ "phase_walks", phase_walks, UT_ARRAY_SIZE(walks), 0 },
		{ "phase_refused", phase_refused, 0, 0 },
		{ "worker_stop_by_eventfd", worker_stop_by_eventfd, 0, 0 },
		{ "worker_stop_on_condvar", worker_stop_on_condvar, 0, 0 },
		{ "placement_table", placement_table,
		  UT_ARRAY_SIZE(place_rows), 0 },
		{ "placement_is_pure", placement_is_pure, 0, 0 },
		{ "placement_revise_table", placement_revise_table,
		  UT_ARRAY_SIZE(revise_rows), 0 },
		{ "placement_revise_refused", placement_revise_refused, 0, 0 },
		{ "heat_material_table", heat_material_table, 0, 0 },
		{ "heat_fold_table", heat_fold_table, 0, 0 },
		{ "placement_policy_text", placement_policy_text, 0, 0 },
		{ "vm_units", vm_units, 0, 0 },
	};

	return ft_run(ft_suite("migrate", cases, UT_ARRAY_SIZE(cases)));
}
