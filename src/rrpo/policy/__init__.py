"""rrpo.policy"""
