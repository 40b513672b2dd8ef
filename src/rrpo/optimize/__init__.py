"""rrpo.optimize"""
