"""elcrec.stream"""
