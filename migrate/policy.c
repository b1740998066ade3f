// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The convergence policy: after each precopy round, another round, a
 * switchover (stop and copy), postcopy, or a cancel. Precopy switches over
 * once its predicted downtime fits the limit and cancels when out of
 * rounds or time; auto, with postcopy at hand, goes postcopy early when
 * the guest writes too fast for precopy to pay (mig_policy_early) and
 * otherwise takes whichever of the two switchovers costs less downtime
 * (auto_next). A pure function of
 * what the rounds measured, so that tests/check-migrate can walk it
 * through a table of rounds without a VM.
 */
#include "config.h"

#include "migrate/internal.h"

void mig_policy_init(struct mig_policy *pol,
		     const struct mig_source_params *p, bool can_postcopy)
{
	*pol = (struct mig_policy){
		.mode = p->mode,
		.can_postcopy = can_postcopy,
		.downtime_limit_ms = p->downtime_limit_ms ?
				     p->downtime_limit_ms : 300,
		.max_rounds = p->max_rounds ? p->max_rounds : 30,
		.deadline_ns = (p->deadline_s ? p->deadline_s : 120) *
			       1000000000ULL,
		.postcopy_downtime_ms = MIG_POLICY_POSTCOPY_MS,
	};
}

static struct mig_verdict verdict(enum mig_decision d, enum mig_reason r)
{
	return (struct mig_verdict){ .decision = d, .reason = r };
}

struct mig_verdict mig_policy_begin(const struct mig_policy *pol)
{
	if (pol->mode == MIG_MODE_POSTCOPY)
		return verdict(MIG_DECIDE_POSTCOPY, MIG_WHY_MODE);
	return verdict(MIG_DECIDE_ROUND, MIG_WHY_CONVERGING);
}

/* Sending the dirty bytes at the round's bandwidth. A round that
 * measured no bandwidth predicts 1e9 ms: never fits, never "better". */
static void predict(const struct mig_round_input *in, struct mig_verdict *v)
{
	double bw = in->bandwidth_mibs * UT_MiB;

	v->dirty_rate_mibs = in->dirty_bytes / UT_MiB /
			     (in->duration_s > 1e-6 ? in->duration_s : 1e-6);
	v->predicted_downtime_ms = bw > 0 ? in->dirty_bytes / bw * 1000 : 1e9;
}

/* Why precopy is out of time after this round, or MIG_WHY_CONVERGING. */
static enum mig_reason out_of_time(const struct mig_policy *pol,
				   const struct mig_round_input *in)
{
	if (in->round + 1 >= pol->max_rounds)
		return MIG_WHY_MAX_ROUNDS;
	if (in->elapsed_ns >= pol->deadline_ns)
		return MIG_WHY_DEADLINE;
	return MIG_WHY_CONVERGING;
}

/* What a postcopy switchover after this round would cost: the fixed
 * part, and the destination dropping every page dirtied since it was
 * sent (one hole per run, about MIG_POLICY_DISCARD_US a 4 KiB page) --
 * with the early DISCARD round, only those the guest dirties while that
 * round drops the others. */
static double postcopy_ms(const struct mig_policy *pol,
			  const struct mig_round_input *in,
			  double dirty_rate_mibs)
{
	double pages = in->dirty_bytes / 4096;

	if (pol->discard_early) {
		double round_s = pages * MIG_POLICY_DISCARD_US / 1e6;
		double during = dirty_rate_mibs * UT_MiB / 4096 * round_s;

		pages = during < pages ? during : pages;
	}
	return pol->postcopy_downtime_ms +
	       pages * MIG_POLICY_DISCARD_US / 1000;
}

/*
 * auto with postcopy at hand: the switchover of least downtime. Precopy
 * switches over once its prediction fits the limit and costs no more
 * than a postcopy switchover would now. Otherwise another round while
 * rounds converge (each one shrinks the dirty set, which both
 * switchovers cost: the next round sends what this one dirtied, a
 * fraction dirty rate / bandwidth of it), postcopy as soon as they do
 * not (that fraction at MIG_POLICY_SHRINK or above) or precopy is out of
 * rounds or time.
 */
static struct mig_verdict auto_next(const struct mig_policy *pol,
				    const struct mig_round_input *in,
				    struct mig_verdict v)
{
	double pred = v.predicted_downtime_ms;
	double shrink = in->bandwidth_mibs > 0 ?
			v.dirty_rate_mibs / in->bandwidth_mibs : 1.0;
	enum mig_reason late = out_of_time(pol, in);

	if (pred <= pol->downtime_limit_ms &&
	    pred <= postcopy_ms(pol, in, v.dirty_rate_mibs)) {
		v.decision = MIG_DECIDE_SWITCHOVER;
		v.reason = MIG_WHY_FITS;
	} else if (late != MIG_WHY_CONVERGING) {
		v.decision = MIG_DECIDE_POSTCOPY;
		v.reason = late;
	} else if (shrink >= MIG_POLICY_SHRINK) {
		v.decision = MIG_DECIDE_POSTCOPY;
		v.reason = MIG_WHY_CHEAPER;
	}
	return v;
}

struct mig_verdict mig_policy_next(const struct mig_policy *pol,
				   struct mig_policy_state *ps,
				   const struct mig_round_input *in)
{
	struct mig_verdict v = verdict(MIG_DECIDE_ROUND, MIG_WHY_CONVERGING);
	double predicted;
	enum mig_reason late;

	predict(in, &v);
	predicted = v.predicted_downtime_ms;
	if (in->postcopy_requested && pol->can_postcopy) {
		/* What the operator asked for, even where precopy fits. */
		v.decision = MIG_DECIDE_POSTCOPY;
		v.reason = MIG_WHY_REQUESTED;
		return v;
	}
	if (in->cut_early && pol->can_postcopy) {
		/* mig_policy_early's verdict, now that the round ended. */
		v.decision = MIG_DECIDE_POSTCOPY;
		v.reason = MIG_WHY_DIRTY;
		return v;
	}
	if (pol->mode == MIG_MODE_HYBRID) {
		v.decision = MIG_DECIDE_POSTCOPY;
		v.reason = MIG_WHY_MODE;
		return v;
	}
	if (pol->mode == MIG_MODE_AUTO && pol->can_postcopy)
		return auto_next(pol, in, v);
	if (predicted <= pol->downtime_limit_ms) {
		v.decision = MIG_DECIDE_SWITCHOVER;
		v.reason = MIG_WHY_FITS;
		return v;
	}
	if (!ps->rounds || predicted < ps->best_ms)
		ps->best_ms = predicted;
	ps->rounds++;
	late = out_of_time(pol, in);
	if (late != MIG_WHY_CONVERGING) {
		v.decision = MIG_DECIDE_CANCEL;
		v.reason = late;
	}
	return v;
}

struct mig_verdict mig_policy_early(const struct mig_policy *pol,
				    const struct mig_early_input *in)
{
	struct mig_verdict v = verdict(MIG_DECIDE_ROUND, MIG_WHY_CONVERGING);

	v.dirty_rate_mibs = in->dirty_bytes / UT_MiB /
			    (in->elapsed_s > 1e-6 ? in->elapsed_s : 1e-6);
	v.predicted_downtime_ms = -1;	/* none: the round is not over */
	if (pol->mode != MIG_MODE_AUTO || !pol->can_postcopy ||
	    in->elapsed_s < MIG_POLICY_EARLY_S)
		return v;
	/* Nothing sent in that time (a stalled stream) says nothing. */
	if (in->sent_bytes > 0 &&
	    in->dirty_bytes >= MIG_POLICY_EARLY_RATIO * in->sent_bytes) {
		v.decision = MIG_DECIDE_POSTCOPY;
		v.reason = MIG_WHY_DIRTY;
	}
	return v;
}

const char *mig_decision_name(enum mig_decision d)
{
	static const char *const names[] = {
		[MIG_DECIDE_ROUND] = "round",
		[MIG_DECIDE_SWITCHOVER] = "switchover",
		[MIG_DECIDE_POSTCOPY] = "postcopy",
		[MIG_DECIDE_CANCEL] = "cancel",
	};

	return (unsigned int)d < UT_ARRAY_SIZE(names) ? names[d] : "?";
}

const char *mig_reason_name(enum mig_reason r)
{
	static const char *const names[] = {
		[MIG_WHY_CONVERGING] = "converging",
		[MIG_WHY_MODE] = "mode",
		[MIG_WHY_FITS] = "fits",
		[MIG_WHY_MAX_ROUNDS] = "max rounds",
		[MIG_WHY_DEADLINE] = "deadline",
		[MIG_WHY_REQUESTED] = "requested",
		[MIG_WHY_CHEAPER] = "postcopy cheaper",
		[MIG_WHY_DIRTY] = "dirtying fast",
	};

	return (unsigned int)r < UT_ARRAY_SIZE(names) ? names[r] : "?";
}
