"""rrpo.codec"""
