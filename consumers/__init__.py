"""elcrec.consumers"""
