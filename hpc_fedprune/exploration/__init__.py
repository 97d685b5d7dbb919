"""AutoFLIP's exploration phase before round 1, spread over the ranks like a round."""
