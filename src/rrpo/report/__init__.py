"""rrpo.report"""
