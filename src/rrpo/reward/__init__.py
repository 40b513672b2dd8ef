"""rrpo.reward"""
