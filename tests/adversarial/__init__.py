"""The attack suite (issue 13 §2): each attack found by an adversarial run, as a bounded test."""
