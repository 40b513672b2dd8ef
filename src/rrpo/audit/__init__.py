"""rrpo.audit"""
